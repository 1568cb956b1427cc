"""The training benchmark's smoke runs on CPU, tiny images: the plain loop with bf16 autocast,
channels_last and ``torch.compile`` (``aot_eager``) forced on (what a GPU run turns on); and, slow,
both comparisons (plain vs 1 Ray worker; Ray Train's real loop vs plain DDP on 2 workers) for one
round. They check what the JSON says, not only that the script ran."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train_throughput.py"
ROOT = BENCH.parents[2]


def _run(tmp_path, *args: str, timeout: int) -> tuple[dict, str]:
    out = tmp_path / "train.json"
    # CPU whatever the machine has: the two-worker comparison would need two GPUs otherwise
    env = os.environ | {"CLINOPS_HOME": str(tmp_path / "home"), "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(BENCH), "--image-size", "32", "--batch-size", "4", *args,
                           "--out", str(out)], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def _load(values) -> bool:
    return len(values) == 3 and all(v >= 0 for v in values)


def test_plain_loop_with_amp_channels_last_and_compile_forced_on_cpu(tmp_path):
    report, stdout = _run(tmp_path, "--steps", "2", "--warmup", "1", "--windows", "2", "--amp", "on",
                          "--channels-last", "on", "--compile", "--compile-backend", "aot_eager", "--skip-ray",
                          "--skip-two-workers", timeout=300)
    assert report["machine"]["gpus"] == 0 and report["skipped"] == []
    [record] = report["records"]
    assert record["comparison"] == "one-process" and "summary" not in record
    assert record["config"]["size"] == 32 and record["config"]["batch_size"] == 4
    assert _load(record["load_before"]) and _load(record["load_after"])
    [row] = record["rounds"]  # without Ray: one round
    assert "ray" not in row
    plain = row["plain"]
    assert plain["images"] == [8, 8]  # 2 windows of 2 timed steps of 4
    assert plain["images_per_s"] == statistics.median(plain["windows_images_per_s"]) > 0
    assert plain["amp_bf16"] is True and plain["channels_last"] is True
    assert plain["compile"] is True and plain["compile_backend"] == "aot_eager"
    # full batches only: nothing compiled again after the warm-up step
    assert plain["compiled_graphs_after_warmup"] == plain["compiled_graphs_after_timing"] >= 1
    assert plain["device_data"] is False and plain["fused_optimizer"] is False  # CPU defaults, not forced
    assert "bf16 AMP True, channels_last True" in stdout and "load [" in stdout


@pytest.mark.slow
@pytest.mark.bench
def test_both_comparisons_for_one_round(tmp_path):
    """Ray Train starts twice (1 worker, then 2) and DDP spawns 2 processes: about a minute on 2 cores."""
    report, stdout = _run(tmp_path, "--steps", "1", "--warmup", "1", "--windows", "1", "--amp", "on",
                          "--channels-last", "on", "--one-process-rounds", "1", "--global-batch", "4",
                          "--steps-per-epoch", "1", "--epochs", "2", "--val-images", "4", "--rounds", "1", timeout=600)
    one, two = report["records"]
    assert one["comparison"] == "one-process" and two["comparison"] == "two-workers"

    [first] = one["rounds"]
    for side in ("plain", "ray"):
        assert first[side]["images"] == [4] and first[side]["images_per_s"] > 0  # 1 step of 4
        assert first[side]["amp_bf16"] is True and first[side]["channels_last"] is True
    ratio = first["ratio_ray_over_plain"]
    assert ratio == pytest.approx(first["ray"]["images_per_s"] / first["plain"]["images_per_s"]) and ratio > 0
    assert one["summary"]["ratio_ray_over_plain"] == {"median": ratio, "min": ratio, "max": ratio}
    assert one["summary"]["verdict"] == ("PASS" if ratio >= 0.97 else "MISS")

    assert two["config"]["workers"] == 2 and two["config"]["backend"] == "gloo"
    assert two["config"]["threads_per_worker"] == max(1, os.cpu_count() // 2)
    assert two["global_batch"] == 4 and two["train_images"] == 4 and two["val_images"] == 4
    [row] = two["rounds"]
    for side in ("ddp", "ray"):
        assert row[side]["timed_epochs"] == 1 and row[side]["timed_images"] == 4  # epoch 2: 1 step of 2 x 2
        assert row[side]["images_per_s"] == pytest.approx(4 / row[side]["timed_seconds"])
        assert len(row[side]["training_only_images_per_s"]) == 2  # one figure an epoch
    assert row["ratio_ray_over_ddp"] == pytest.approx(row["ray"]["images_per_s"] / row["ddp"]["images_per_s"])
    assert row["ratio_ray_over_ddp"] > 0
    summary = two["summary"]
    assert summary["ratio_ray_over_ddp"] == {"median": row["ratio_ray_over_ddp"], "min": row["ratio_ray_over_ddp"],
                                             "max": row["ratio_ray_over_ddp"]}
    assert summary["verdict"] == ("PASS" if row["ratio_ray_over_ddp"] >= 0.9 else "MISS")
    assert _load(two["load_before"]) and _load(two["load_after"])
    assert f"target >= 0.9 (on CPU): {summary['verdict']}" in stdout


def test_b4_at_380_px_is_skipped_on_cpu_with_its_cost_scaled_from_b0(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts its folder first; undone afterwards
    spec = importlib.util.spec_from_file_location("train_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    skip = bench._b4_skipped(64, 45.0)
    # torchvision: 4.394 GFLOPs for B4 at 380 px, 0.386 for B0 at 224 px, so (64/224)^2 of that at 64 px
    factor = 4.394 / (0.386 * (64 / 224) ** 2)
    assert skip["estimated_images_per_s"] == pytest.approx(45.0 / factor)
    assert skip["variant"] == "efficientnet_b4" and skip["size"] == 380
    assert "no GPU" in skip["reason"] and f"{factor:.0f}x the FLOPs" in skip["reason"]
