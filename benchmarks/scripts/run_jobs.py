"""Run a list of `torch-qinit` commands side by side before a deadline, and pack what they wrote.

Made for a lent GPU machine (one call, a hard time limit, at most 8 files back): many small benchmark
jobs share the GPU and the cores, each job writes its own folder, and whatever finished comes back even
if the slowest jobs did not.  A job that has not started when less than --min-left seconds remain is
skipped; a running job is killed at the deadline (its folder keeps its log).

Jobs file: one job per line, ``NAME: [VAR=VALUE ...] ARGS`` (ARGS as for `torch-qinit`, shell-quoted;
leading ``VAR=VALUE`` words set that job's environment, e.g. ``TORCH_QINIT_WEIGHTS_DIR=cand``); ``{out}``
is that job's folder, ``#`` starts a comment.  Jobs start in file order.

    python benchmarks/scripts/run_jobs.py JOBS.txt --out $OUT --workers 8 --deadline 540

Writes ``OUT/jobs.tgz`` (one folder per job: its outputs and ``log.txt``) and prints one line per job.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

Job = tuple[str, dict[str, str], list[str]]  # name, extra environment, torch-qinit arguments


def parse_jobs(text: str) -> list[Job]:
    """[(name, environment, argv)] from a jobs file; ValueError naming the line when one is malformed."""
    jobs: list[Job] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, args = line.partition(":")
        name = name.strip()
        if not sep or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"line {n}: expected 'NAME: ARGS' with NAME in letters, digits, '-' and '_'")
        if any(name == j for j, _, _ in jobs):
            raise ValueError(f"line {n}: job {name!r} appears twice")
        words = shlex.split(args)
        env = {}
        while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        jobs.append((name, env, words))
    return jobs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("jobs", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--deadline", type=float, required=True, help="seconds from now when every job must be done")
    p.add_argument("--min-left", type=float, default=60.0, help="start no job with fewer seconds left (default 60)")
    args = p.parse_args(argv)
    try:
        jobs = parse_jobs(args.jobs.read_text())
    except (OSError, ValueError) as exc:
        p.error(f"{args.jobs}: {exc}")
    end = time.monotonic() + args.deadline
    work = args.out / "jobs"
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    pending, running, done = list(jobs), {}, []
    while pending or running:
        while pending and len(running) < args.workers and end - time.monotonic() > args.min_left:
            name, job_env, job_args = pending.pop(0)
            folder = work / name
            folder.mkdir(exist_ok=True)
            cmd = [sys.executable, "-m", "torch_qinit.cli.main"] + [a.replace("{out}", str(folder)) for a in job_args]
            log = (folder / "log.txt").open("w")
            log.write("$ " + "".join(f"{k}={shlex.quote(v)} " for k, v in job_env.items()) + shlex.join(cmd) + "\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**env, **job_env})
            running[name] = (proc, time.monotonic(), log)
        if pending and end - time.monotonic() <= args.min_left:
            done += [(name, "not started", 0.0) for name, _, _ in pending]
            pending = []
        for name, (proc, t0, log) in list(running.items()):
            killed = proc.poll() is None and time.monotonic() >= end
            if killed:
                proc.kill()
                proc.wait()
            if proc.poll() is not None:
                log.close()
                status = "killed" if killed else "rc 0" if proc.returncode == 0 else f"rc {proc.returncode}"
                done.append((name, status, time.monotonic() - t0))
                del running[name]
        time.sleep(1)
    with tarfile.open(args.out / "jobs.tgz", "w:gz") as tar:
        tar.add(work, arcname="jobs")
    for name, status, seconds in done:
        print(f"{name:40s} {status:12s} {seconds:7.1f} s")
    return 0 if all(s == "rc 0" for _, s, _ in done) else 1


if __name__ == "__main__":
    raise SystemExit(main())
