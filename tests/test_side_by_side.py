"""benchmarks/scripts/side_by_side.py: final accuracies of one method from several result files, per net."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "scripts" / "side_by_side.py"
HEADER = "arch,bits,method,seed,steps,final_acc,status\n"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)


def test_columns_per_net_and_the_summary_over_shared_nets(tmp_path):
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text(HEADER + "0,4,ghn-qat,0,150,0.5,ok\n0,4,ghn-qat,1,150,0.1,ok\n0,4,he_normal,0,150,0.8,ok\n"
                   "0,4,he_normal,1,150,0.6,ok\n2,4,ghn-qat,0,150,0.9,ok\n")
    new.write_text(HEADER + "0,4,ghn-qat,0,150,0.7,ok\n0,4,ghn-qat,1,150,0.75,ok\n")
    proc = _run(f"shipped={old}:ghn-qat", f"new={new}:ghn-qat", f"He={old}:he_normal")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "| net | shipped | new | He |"
    assert lines[2] == "| lenet5 | 50.0 / 10.0 | 70.0 / 75.0 | 80.0 / 60.0 |"  # arch 2: not in every column
    assert len(lines) == 4
    assert lines[3] == ("| **mean over runs** | 30.0 (median 30.0, 1 of 2 at chance) | "
                        "72.5 (median 72.5, 0 of 2 at chance) | 70.0 (median 70.0, 0 of 2 at chance) |")


def test_a_method_with_no_runs_is_an_error(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(HEADER + "0,4,ghn-qat,0,150,0.5,ok\n")
    proc = _run(f"x={path}:glorot_uniform")
    assert proc.returncode != 0 and "no 'glorot_uniform' runs" in proc.stderr
    assert _run(f"{path}:ghn-qat").returncode != 0  # no label
