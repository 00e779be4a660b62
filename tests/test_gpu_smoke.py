"""benchmarks/gpu_smoke.py keeps working without a GPU: its quick CPU mode runs every section (kernel
parity, training against CPU losses with one compiled run, generation, the shipped model, timings) and
writes both reports. About 3 minutes on 2 busy cores, most of it inductor compiling."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_cpu_smoke_run_passes_and_writes_its_report(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_smoke.py"), "--device", "cpu", "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    report = json.loads((tmp_path / "smoke.json").read_text())
    failed = [c for c in report["checks"] if not c["passed"]]
    assert done.returncode == 0 and not failed, (failed, done.stdout[-2000:], done.stderr[-2000:])
    names = " ".join(c["name"] for c in report["checks"])
    for part in ("parity sdpa", "parity blocked", "parity flex", "dense reference = tests/reference.py",
                 "train blocked float32 compiled", "generation alibi", "shipped model", "shipped copy head"):
        assert part in names, part
    assert {"training", "decode", "attention"} <= set(report["tables"])
    assert report["environment"]["sections_done"] == "5 of 5"
    assert (tmp_path / "smoke.md").read_text().startswith("# GPU smoke report")
