"""The training benchmark's smoke run: the plain loop with bf16 autocast and channels_last forced on CPU
(what a GPU run turns on), tiny images, one timed step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train_throughput.py"


def test_benchmark_smoke_run_with_amp_and_channels_last_forced(tmp_path):
    out = tmp_path / "train.json"
    done = subprocess.run([sys.executable, str(BENCH), "--image-size", "32", "--batch-size", "4", "--steps", "2",
                           "--warmup", "1", "--amp", "on", "--channels-last", "on", "--skip-ray", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=BENCH.parents[2],
                          env={"PATH": "/usr/bin:/bin", "CLINOPS_HOME": str(tmp_path / "home"),
                               "PYTHONPATH": str(BENCH.parents[2])})
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    plain = record["plain"]
    assert plain["amp_bf16"] is True and plain["channels_last"] is True
    assert plain["images"] == 8 and plain["images_per_s"] > 0  # 2 timed steps of 4
    assert record["config"]["size"] == 32 and "ray" not in record
    assert "bf16 AMP True, channels_last True" in done.stdout
