"""Training throughput (images/s): a plain PyTorch loop against the Ray Train path, same model, batch,
precision and data, in one run. Not a test: ``make bench-train``.

Both paths run the same step (``train_loop.train_one_epoch``) on the same synthetic uint8 images
through the same loader; the Ray path adds exactly what training adds (a ``TorchTrainer`` worker,
``prepare_model`` / ``prepare_data_loader``, ``ray.train.report``). On CUDA both use bf16 autocast
and channels_last (as training does); on CPU, fp32 and all cores in both paths unless ``--amp on``
``--channels-last on`` force the GPU switches (the smoke test does).

    python tests/bench/train_throughput.py                       # B0 at 224 px
    python tests/bench/train_throughput.py --variant b4 --image-size 380
    python tests/bench/train_throughput.py --image-size 32 --batch-size 4 --steps 2 --warmup 1 \
        --amp on --channels-last on --skip-ray      # the smoke run: the GPU switches forced on CPU
Results: printed, and written to ``$CLINOPS_HOME/bench/train.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from components.common.settings import get_settings
from components.pneumonia import model as model_lib
from components.pneumonia import preprocess, split, train_loop


def _defaults(cuda: bool) -> dict:
    # A GPU needs large batches and enough steps to reach steady state; two CPU cores need few.
    return {"batch_size": 256 if cuda else 32, "steps": 60 if cuda else 6, "warmup": 15 if cuda else 2}


def _data(n: int, size: int, channels: int, seed: int = 0) -> split.Arrays:
    rng = np.random.default_rng(seed)
    return split.Arrays(rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8),
                        rng.integers(0, 2, n).astype(np.int64))


class _Cycle(torch.utils.data.Dataset):
    """``length`` samples drawn cyclically from a small in-memory set (a long epoch, little memory)."""

    def __init__(self, arrays: split.Arrays, length: int):
        self.base = train_loop.ArrayDataset(arrays)
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        x, y, _ = self.base[i % len(self.base)]
        return x, y, i


def measure(config: dict, device: torch.device, prepare=None) -> dict:
    """Warm up, then time ``steps`` optimizer steps; ``prepare`` = Ray's (model, loader) hooks."""
    accel = train_loop.Accel.choose(device, train_loop.resolve_config(config["train"]))
    contract = preprocess.ImageContract(config["size"], config["size"], config["channels"],
                                        (0.5,) * config["channels"], (0.25,) * config["channels"])
    arrays = _data(config["distinct_images"], config["size"], config["channels"])
    length = config["batch_size"] * (config["steps"] + config["warmup"] + 2)
    loader = torch.utils.data.DataLoader(_Cycle(arrays, length), batch_size=config["batch_size"], shuffle=True,
                                         drop_last=True, num_workers=accel.loader_workers,
                                         pin_memory=accel.pin_memory, persistent_workers=accel.loader_workers > 0)
    torch.manual_seed(0)
    net = model_lib.build_model(config["variant"], config["channels"], 2)
    if accel.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if prepare is None:
        net = net.to(device)
    else:
        net, loader = prepare(net), prepare.loader(loader)
    if config["compile"]:
        net = torch.compile(net)
    batcher = train_loop.DeviceBatch(contract, accel)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scheduler = train_loop.make_scheduler(optimizer, train_loop.resolve_config({"epochs": 1}), len(loader))
    loss_fn = torch.nn.CrossEntropyLoss()
    iterator = iter(loader)

    class _Slice:  # consecutive batches from one iterator: warm-up and timing share the loader workers
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            for _ in range(self.n):
                yield next(iterator)

    train_loop.train_one_epoch(net, batcher, _Slice(config["warmup"]), optimizer, scheduler, loss_fn, accel, False)
    _, seen, seconds = train_loop.train_one_epoch(net, batcher, _Slice(config["steps"]), optimizer, scheduler,
                                                  loss_fn, accel, False)
    return {"images_per_s": seen / seconds, "images": seen, "seconds": seconds, "amp_bf16": accel.amp,
            "channels_last": accel.channels_last, "loader_workers": accel.loader_workers}


def _ray_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    class Prepare:
        def __call__(self, net):
            return ray.train.torch.prepare_model(net)

        @staticmethod
        def loader(loader):
            return ray.train.torch.prepare_data_loader(loader)

    if not torch.cuda.is_available():
        torch.set_num_threads(config["threads"])
    result = measure(config, ray.train.torch.get_device(), Prepare())
    # Train V2 keeps metrics only alongside checkpoints: the result travels as a one-file checkpoint.
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "result.json").write_text(json.dumps(result))
        ray.train.report(result, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def run_ray(config: dict, cuda: bool) -> dict:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    start = time.perf_counter()
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False)
    try:
        trainer = TorchTrainer(
            _ray_worker, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=1, use_gpu=cuda,
                                         resources_per_worker={"CPU": config["threads"]} | ({"GPU": 1} if cuda else {})),
            run_config=RunConfig(name="bench-train", storage_path=str(get_settings().home / "bench" / "ray")))
        result = trainer.fit()
    finally:
        ray.shutdown()
    with result.checkpoint.as_directory() as folder:
        metrics = json.loads((Path(folder) / "result.json").read_text())
    metrics["wall_seconds_with_startup"] = time.perf_counter() - start
    return metrics


def _switch(value: str):
    return {"auto": "auto", "on": True, "off": False}[value]


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="b0", choices=["b0", "b1", "b2", "b3", "b4"])
    parser.add_argument("--image-size", type=int, default=224, help="224 for B0, 380 for B4 (their native sizes)")
    parser.add_argument("--channels", type=int, default=3, choices=[1, 3])
    parser.add_argument("--batch-size", type=int, default=_defaults(cuda)["batch_size"])
    parser.add_argument("--steps", type=int, default=_defaults(cuda)["steps"], help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=_defaults(cuda)["warmup"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the model in both paths")
    parser.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                        help="bf16 autocast: auto = on CUDA; on forces it on CPU too")
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="channels_last model and input: auto = on CUDA")
    parser.add_argument("--out", type=Path, help="result file; default $CLINOPS_HOME/bench/train.json")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args(argv)

    threads = os.cpu_count() or 1
    config = {"variant": model_lib.variant_name(args.variant), "size": args.image_size, "channels": args.channels,
              "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "compile": args.compile,
              "distinct_images": min(1024, args.batch_size * 4), "threads": threads,
              "train": {"amp": _switch(args.amp), "channels_last": _switch(args.channels_last)}}
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, {threads} cores)"
    print(f"device: {name} · torch {torch.__version__} · {config['variant']} @ {args.image_size}px · "
          f"batch {args.batch_size} · {args.steps} timed steps after {args.warmup} warm-up", flush=True)

    if not cuda:
        torch.set_num_threads(threads)
    plain = measure(config, device)
    print(f"plain PyTorch loop: {plain['images_per_s']:8.1f} images/s "
          f"(bf16 AMP {plain['amp_bf16']}, channels_last {plain['channels_last']})", flush=True)
    record = {"device": name, "torch": torch.__version__, "config": config, "plain": plain}
    if not args.skip_ray:
        ray_result = run_ray(config, cuda)
        ratio = ray_result["images_per_s"] / plain["images_per_s"]
        print(f"Ray Train (1 worker): {ray_result['images_per_s']:8.1f} images/s · ratio Ray/plain {ratio:.3f} "
              f"({(ratio - 1) * 100:+.1f} %) · fit() wall time incl. Ray start-up "
              f"{ray_result['wall_seconds_with_startup']:.1f} s", flush=True)
        record |= {"ray": ray_result, "ratio_ray_over_plain": ratio}
    out = args.out or get_settings().home / "bench" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
