"""benchmarks/scripts/run_jobs.py: parallel `torch-qinit` jobs before a deadline, packed into one archive."""
from __future__ import annotations

import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "scripts" / "run_jobs.py"


def _run(jobs: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "jobs.txt").write_text(jobs)
    return subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "jobs.txt"), "--out", str(tmp_path / "out"),
                           *extra], cwd=REPO, capture_output=True, text=True, timeout=240, check=False)


def test_jobs_run_side_by_side_and_their_folders_come_back_in_one_archive(tmp_path):
    proc = _run("# two jobs\nok: TORCH_QINIT_WEIGHTS_DIR=/no/such/dir info\n"
                "bad: bench no_such_benchmark --out {out}  # fails\n",
                tmp_path,
                "--workers", "2", "--deadline", "200", "--min-left", "0")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one job failed
    status = {line.split()[0]: line.split()[1:3] for line in proc.stdout.splitlines()}
    assert status["ok"] == ["rc", "0"] and status["bad"][0] == "rc" and status["bad"][1] != "0"
    with tarfile.open(tmp_path / "out" / "jobs.tgz") as tar:
        names = set(tar.getnames())
        log = tar.extractfile("jobs/bad/log.txt").read().decode()
        ok_log = tar.extractfile("jobs/ok/log.txt").read().decode()
    assert {"jobs/ok/log.txt", "jobs/bad/log.txt"} <= names
    assert str(tmp_path / "out" / "jobs" / "bad") in log  # {out} became the job's own folder
    assert ok_log.startswith("$ TORCH_QINIT_WEIGHTS_DIR=/no/such/dir ")  # the job's own environment
    assert "/no/such/dir" in ok_log.split("\n", 1)[1]  # and `info` saw it


def test_a_job_that_cannot_start_in_time_is_skipped_and_a_running_one_is_stopped(tmp_path):
    t0 = time.monotonic()
    proc = _run("slow: bench qat_from_init --steps 100000 --quick --out {out}\nlate: info\n", tmp_path,
                "--workers", "1", "--deadline", "20", "--min-left", "5")
    assert time.monotonic() - t0 < 60
    status = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    assert status["late"].startswith("not started") and status["slow"].startswith("killed")


@pytest.mark.parametrize("text, message", [("no colon here\n", "line 1"), ("a: info\na: info\n", "twice"),
                                           ("bad name!: info\n", "line 1")])
def test_malformed_jobs_files_are_refused_with_the_line(tmp_path, text, message):
    proc = _run(text, tmp_path, "--deadline", "10")
    assert proc.returncode != 0 and message in proc.stderr
