"""Training throughput (images/s) of the pneumonia training code, plain PyTorch against Ray Train, in one
run. Not a test: ``make bench-train``.

Two comparisons, each with the training code's own functions (``train_loop.Accel`` and
``configure_backends``, ``DeviceSampler`` or the loader, ``DeviceBatch``, ``train_one_epoch``,
``make_scheduler``) and the switches training turns on: on CUDA bf16 autocast, channels_last,
``cudnn.benchmark``, fused AdamW, the uint8 set kept on the GPU and sampled there when it fits (else a
pinned loader), full batches only (no recompile from a short last batch), and with ``--compile``
``torch.compile`` with training's ``compile_backend``. On CPU the same code runs in fp32 unless
``--amp on`` / ``--channels-last on`` force the GPU switches (the smoke test does).

1. **One process**: steady-state optimizer steps of a plain loop against the same steps in one Ray
   Train worker (``prepare_model`` and ``make_train_batches``, the Ray path training takes); warm-up
   first, then ``--windows`` timed windows of ``--steps`` steps (their median is the path's figure);
   ``--one-process-rounds`` alternating rounds (``BENCH_TRAIN_ROUNDS`` on CPU, 1 on CUDA, where every
   round compiles again), the median Ray/plain ratio and its spread. Target on a GPU: Ray within 3 %
   of the plain loop (ratio >= 0.97), printed as PASS/MISS.
2. **Two workers** (:mod:`train_ddp`): the real training loop (``train_loop_per_worker``: per-epoch
   validation, ``ray.train.report`` and checkpoints) on 2 Ray Train workers against a plain PyTorch DDP
   loop with 2 processes (gloo on CPU, nccl on CUDA with a GPU each), same data, global batch and
   steps; ``BENCH_TRAIN_ROUNDS`` (default 3) alternating rounds, per-round figures, the median
   Ray/DDP ratio and its spread. Target on CPU: Ray >= 0.9x DDP, printed as PASS/MISS. On 2 cores
   each of the 2 processes gets 1 thread.

``--plan make`` (what ``make bench-train`` runs): on CUDA B0 at 224 px and B4 at 380 px with
``--compile`` (one process; the two-worker comparison with B0 when the machine has 2 GPUs); on a
CPU-only machine B0 at 64 px, a few steps, and a line saying why B4 at 380 px was skipped.

    python tests/bench/train_throughput.py --plan make
    python tests/bench/train_throughput.py --variant b4 --image-size 380 --compile
    python tests/bench/train_throughput.py --image-size 32 --batch-size 4 --steps 2 --warmup 1 --windows 1 \\
        --amp on --channels-last on --skip-two-workers      # GPU switches forced on CPU
Every configuration prints its settings and the machine's load before and after, and is one record in
``$CLINOPS_HOME/bench/train.json`` (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).parent)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import train_ddp  # noqa: E402

from components.common.settings import get_settings  # noqa: E402
from components.pneumonia import batching, device_data, preprocess, split, train_loop, trainer  # noqa: E402
from components.pneumonia import model as model_lib  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_TRAIN_ROUNDS", "3"))
TARGET_RAY_OVER_PLAIN = 0.97  # one process on a GPU: Ray Train within 3 % of the plain loop


def _defaults(cuda: bool) -> dict:
    # A GPU needs enough steps to reach steady state; two CPU cores need few to finish in minutes.
    if cuda:
        return {"steps": 30, "warmup": 15, "windows": 3, "steps_per_epoch": 20, "epochs": 3}
    # steps_per_epoch 20 at a global batch of 16: the pipeline's quick profile (320 phantoms of 64 px)
    return {"steps": 6, "warmup": 2, "windows": 3, "steps_per_epoch": 20, "epochs": 3}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _switch(value: str):
    return {"auto": "auto", "on": True, "off": False}[value]


# -- 1. one process: steady-state steps -------------------------------------------------------------------
def _stream(batches):
    """Batches without end: pass after pass over ``batches``, reshuffled per pass as training does."""
    for epoch in itertools.count():
        sampler = train_ddp.sampler_of(batches)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yield from batches


def measure_steps(config: dict, device: torch.device, in_ray: bool = False) -> dict:
    """Warm up, then time ``windows`` x ``steps`` optimizer steps; ``in_ray``: inside a Ray Train worker,
    with Ray's ``prepare_model`` and training's ``make_train_batches``."""
    train = train_loop.resolve_config(config["train"])
    accel = train_loop.Accel.choose(device, train)
    accel.configure_backends()
    size, channels, batch = config["size"], config["channels"], config["batch_size"]
    contract = preprocess.ImageContract(size, size, channels, (0.5,) * channels, (0.25,) * channels)
    rng = np.random.default_rng(0)
    arrays = split.Arrays(rng.integers(0, 256, (config["distinct_images"], size, size, channels), dtype=np.uint8),
                          (np.arange(config["distinct_images"]) % 2).astype(np.int64))
    if in_ray:
        import ray.train.torch

        batches = train_loop.make_train_batches(arrays, batch, accel, train, 0, 1)
        wrap = ray.train.torch.prepare_model
    else:
        batches = train_ddp.plain_train_batches(arrays, batch, accel, train)

        def wrap(net):
            return net.to(device)

    train_loop.seed_everything(train["seed"])
    net = train_loop.build_net(train, channels, accel, wrap)
    batcher = train_loop.DeviceBatch(contract, accel)
    optimizer = train_loop.make_optimizer(net, train, config["lr"], accel)
    total = config["warmup"] + config["windows"] * config["steps"]
    scheduler = train_loop.make_scheduler(optimizer, train | {"epochs": 1, "lr": config["lr"]}, total)
    loss_fn = torch.nn.CrossEntropyLoss()
    stream = _stream(batches)

    def steps(n):
        return train_loop.train_one_epoch(net, batcher, itertools.islice(stream, n), optimizer, scheduler, loss_fn,
                                          accel, train["augment"])

    steps(config["warmup"])
    graphs_after_warmup = train_ddp.compiled_graphs() if train["compile"] else None
    windows, images = [], []
    for _ in range(config["windows"]):
        _, seen, seconds = steps(config["steps"])
        windows.append(seen / seconds)
        images.append(seen)
    graphs = train_ddp.compiled_graphs() if train["compile"] else None
    return {"images_per_s": statistics.median(windows), "windows_images_per_s": windows, "images": images,
            "amp_bf16": accel.amp, "channels_last": accel.channels_last, "cudnn_benchmark": accel.cudnn_benchmark,
            "fused_optimizer": accel.fused_optimizer, "device_data": isinstance(batches, device_data.DeviceSampler),
            "pin_memory": accel.pin_memory, "loader_workers": accel.loader_workers, "compile": train["compile"],
            "compile_backend": train["compile_backend"] if train["compile"] else None,
            "compiled_graphs_after_warmup": graphs_after_warmup, "compiled_graphs_after_timing": graphs,
            "threads": torch.get_num_threads()}


def _ray_steps_worker(config: dict) -> None:
    import ray.train.torch

    if not torch.cuda.is_available():
        torch.set_num_threads(config["threads"])
    result = measure_steps(config, ray.train.torch.get_device(), in_ray=True)
    Path(config["result"]).write_text(json.dumps(result))


def run_ray_steps(config: dict, cuda: bool) -> dict:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="clinops-bench-train-") as tmp, \
            trainer.local_ray(num_cpus=os.cpu_count(), num_gpus=1 if cuda else None):
        started = time.perf_counter()
        trainer.check_resources(1, cuda, config["threads"], 0.0)
        result_file = Path(tmp) / "result.json"
        TorchTrainer(
            _ray_steps_worker, train_loop_config=config | {"result": str(result_file)},
            scaling_config=ScalingConfig(num_workers=1, use_gpu=cuda,
                                         resources_per_worker={"CPU": config["threads"]} | ({"GPU": 1} if cuda else {})),
            run_config=RunConfig(name="bench-train", storage_path=str(Path(tmp) / "ray"),
                                 failure_config=trainer.failure_config())).fit()
        result = json.loads(result_file.read_text())
        result |= {"ray_start_seconds": started - start, "fit_seconds": time.perf_counter() - started}
    return result


def _release(cuda: bool) -> None:
    """Drop what the plain path left in this process (compiled graphs, the allocator's cached blocks)
    before the next path starts: a Ray worker on the same GPU sizes its device data by free memory."""
    import gc

    torch._dynamo.reset()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()


def _path_line(name: str, r: dict) -> str:
    w = r["windows_images_per_s"]
    return (f"{name}: {r['images_per_s']:8.1f} images/s (median of {len(w)} windows of {r['images'][0]} images; "
            f"min {min(w):.1f}, max {max(w):.1f}) · bf16 AMP {r['amp_bf16']}, channels_last {r['channels_last']}, "
            f"device data {r['device_data']}, fused AdamW {r['fused_optimizer']}, compile {r['compile_backend']}"
            + ("" if r["compiled_graphs_after_timing"] is None else
               f" ({r['compiled_graphs_after_warmup']} graphs after warm-up, {r['compiled_graphs_after_timing']} after timing)"))


def one_process(args, variant: str, size: int, cuda: bool, device: torch.device) -> dict:
    threads = os.cpu_count() or 1
    switches = _train_switches(args)
    batch, lr = train_loop.effective_batch_and_lr(
        train_loop.resolve_config(switches | {"variant": variant, "batch_size": args.batch_size}), 1, device.type, size)
    rounds = 1 if args.skip_ray else args.one_process_rounds
    config = {"variant": variant, "size": size, "channels": args.channels, "batch_size": batch, "lr": lr,
              "steps": args.steps, "warmup": args.warmup, "windows": args.windows, "rounds": rounds,
              "distinct_images": batch * 16, "threads": threads, "train": switches | {"variant": variant}}
    before = load()
    print(f"\n== one process · {variant} @ {size} px · {args.channels} channel(s) · batch {batch} · "
          f"{args.warmup} warm-up steps, then {args.windows} x {args.steps} timed steps · {threads} thread(s) · "
          f"switches {switches} · {rounds} alternating round(s) · load {before}", flush=True)
    if not cuda:
        torch.set_num_threads(threads)
    record = {"comparison": "one-process", "config": config, "load_before": before, "rounds": []}
    for i in range(rounds):
        row = {"plain": measure_steps(config, device)}
        _release(cuda)
        print(_path_line(f"  round {i + 1}/{rounds} · plain PyTorch loop  ", row["plain"]), flush=True)
        if not args.skip_ray:
            row["ray"] = r = run_ray_steps(config, cuda)
            row["ratio_ray_over_plain"] = r["images_per_s"] / row["plain"]["images_per_s"]
            print(_path_line(f"  round {i + 1}/{rounds} · Ray Train (1 worker)", r) + f" · Ray start "
                  f"{r['ray_start_seconds']:.1f} s, fit() {r['fit_seconds']:.1f} s · Ray/plain "
                  f"{row['ratio_ray_over_plain']:.3f}", flush=True)
        record["rounds"].append(row)
    if not args.skip_ray:
        ratios = [row["ratio_ray_over_plain"] for row in record["rounds"]]
        summary = {"ratio_ray_over_plain": train_ddp.spread(ratios),
                   "plain_images_per_s": train_ddp.spread([row["plain"]["images_per_s"] for row in record["rounds"]]),
                   "ray_images_per_s": train_ddp.spread([row["ray"]["images_per_s"] for row in record["rounds"]]),
                   "target": TARGET_RAY_OVER_PLAIN,
                   "verdict": "PASS" if statistics.median(ratios) >= TARGET_RAY_OVER_PLAIN else "MISS"}
        record["summary"] = summary
        r, p, y = summary["ratio_ray_over_plain"], summary["plain_images_per_s"], summary["ray_images_per_s"]
        print(f"Ray/plain median {r['median']:.3f} ({(r['median'] - 1) * 100:+.1f} %; min {r['min']:.3f}, max "
              f"{r['max']:.3f}) over {rounds} round(s) · plain median {p['median']:.1f} images/s · Ray median "
              f"{y['median']:.1f} · target >= {TARGET_RAY_OVER_PLAIN} (a GPU target"
              f"{'' if cuda else '; this is a CPU run'}): {summary['verdict']}", flush=True)
    record["load_after"] = load()
    print(f"load after {record['load_after']}", flush=True)
    return record


# -- 2. two workers: the real loop on Ray Train against plain DDP --------------------------------------------
def two_workers(args, variant: str, size: int, cuda: bool) -> dict:
    world = args.workers
    threads = max(1, (os.cpu_count() or 1) // world)
    switches = _train_switches(args)
    per_worker = (args.global_batch // world if args.global_batch
                  else batching.per_device_batch(variant, size, "cuda" if cuda else "cpu"))
    # validation: 0.3 of the training images, the quick profile's 96 for 320
    val_images = args.val_images or max(world, round(0.3 * args.steps_per_epoch * per_worker * world))
    before = load()
    config = {"variant": variant, "size": size, "channels": args.channels, "workers": world,
              "batch_per_worker": per_worker, "global_batch": per_worker * world,
              "steps_per_epoch": args.steps_per_epoch, "train_images": args.steps_per_epoch * per_worker * world,
              "val_images": val_images, "epochs": args.epochs, "rounds": args.rounds,
              "threads_per_worker": threads, "backend": "nccl" if cuda else "gloo", "train": switches}
    print(f"\n== {world} workers · real training loop on Ray Train vs plain DDP ({config['backend']}) · {variant} @ "
          f"{size} px · batch {per_worker} a worker ({per_worker * world} global) · {args.steps_per_epoch} steps an "
          f"epoch ({config['train_images']} training, {val_images} validation images) x {args.epochs} epochs (the first is warm-up) · {args.rounds} alternating rounds · {threads} "
          f"thread(s) a worker · switches {switches} · load {before}", flush=True)
    result = train_ddp.compare(variant, size, args.channels, per_worker, args.steps_per_epoch, args.epochs, world,
                               args.rounds, switches, cuda, threads, val_images)
    s = result["summary"]
    r, d, y = s["ratio_ray_over_ddp"], s["ddp_images_per_s"], s["ray_images_per_s"]
    print(f"Ray/DDP median {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f}) over {args.rounds} rounds · "
          f"DDP median {d['median']:.1f} images/s ({d['min']:.1f}-{d['max']:.1f}) · Ray median {y['median']:.1f} "
          f"({y['min']:.1f}-{y['max']:.1f}) · Ray's epoch {s['ray_extra_seconds_per_epoch']['median']:+.2f} s "
          f"against DDP's · target >= {s['target']} (on CPU): {s['verdict']}", flush=True)
    record = {"comparison": "two-workers", "config": config, "load_before": before} | result
    record["load_after"] = load()
    print(f"load after {record['load_after']}", flush=True)
    return record


def _train_switches(args) -> dict:
    return {"amp": _switch(args.amp), "channels_last": _switch(args.channels_last), "compile": args.compile,
            "compile_backend": args.compile_backend}


def _b4_skipped(b0_size: int, b0_images_per_s: float | None) -> dict:
    """Why B4 at 380 px is not run on a CPU-only machine, with what it would cost here."""
    import torchvision

    ops = {v: getattr(torchvision.models, f"EfficientNet_{v.upper()}_Weights").IMAGENET1K_V1.meta["_ops"]
           for v in ("b0", "b4")}  # GFLOPs an image at the native size (224, 380)
    factor = ops["b4"] / (ops["b0"] * (b0_size / 224) ** 2)
    reason = (f"B4 at 380 px skipped: a GPU measurement (target >= 500 images/s on one H100) and this machine has "
              f"no GPU; an image costs {factor:.0f}x the FLOPs of B0 at {b0_size} px")
    estimate = None
    if b0_images_per_s:
        estimate = b0_images_per_s / factor
        batch = batching.CPU_BATCH
        reason += (f", so about {estimate:.2f} images/s on this CPU (scaled from the B0 figure above), "
                   f"{batch / estimate:.0f} s a step of {batch}: a figure of the CPU, not of the GPU path the "
                   f"targets are for")
    return {"variant": "efficientnet_b4", "size": 380, "reason": reason, "estimated_images_per_s": estimate}


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    d = _defaults(cuda)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", choices=["make", "one"], default="one",
                        help="make: what make bench-train runs on this machine; one: the configuration below")
    parser.add_argument("--variant", default="b0", choices=["b0", "b1", "b2", "b3", "b4"])
    parser.add_argument("--image-size", type=int, default=224, help="224 for B0, 380 for B4 (their native sizes)")
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3], help="1: the pipeline's default")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="comparison 1's batch; 0 = sized for the variant as training's batch_size=0 "
                             f"does ({batching.CPU_BATCH} on CPU)")
    parser.add_argument("--global-batch", type=int, default=0,
                        help="comparison 2's batch over all workers (training's batch_size); 0 = sized for the "
                             "variant a worker")
    parser.add_argument("--steps", type=int, default=d["steps"], help="timed optimizer steps a window")
    parser.add_argument("--warmup", type=int, default=d["warmup"])
    parser.add_argument("--windows", type=int, default=d["windows"], help="timed windows a path (median, spread)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model, as training's compile=true")
    parser.add_argument("--compile-backend", default=train_loop.DEFAULTS["compile_backend"],
                        help="training's compile_backend (aot_eager: tracing without code generation)")
    parser.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                        help="bf16 autocast: auto = on CUDA; on forces it on CPU too")
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="channels_last model and input: auto = on CUDA")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers / DDP processes of comparison 2")
    parser.add_argument("--steps-per-epoch", type=int, default=d["steps_per_epoch"])
    parser.add_argument("--val-images", type=int, default=0, help="0 = 0.3 of the training images")
    parser.add_argument("--epochs", type=int, default=d["epochs"], help="the first is warm-up; at least 2")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="DDP/Ray rounds (BENCH_TRAIN_ROUNDS)")
    parser.add_argument("--one-process-rounds", type=int, default=1 if cuda else ROUNDS,
                        help="plain/Ray rounds of comparison 1; default BENCH_TRAIN_ROUNDS on CPU, 1 on CUDA "
                             "(each round compiles the model again in both paths)")
    parser.add_argument("--skip-ray", action="store_true", help="comparison 1 without its Ray side")
    parser.add_argument("--skip-one-process", action="store_true")
    parser.add_argument("--skip-two-workers", action="store_true")
    parser.add_argument("--out", type=Path, help="result file; default $CLINOPS_HOME/bench/train.json")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is warm-up")

    # Ray's workers (a local Ray inherits this environment) and the DDP processes import this folder's modules
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).resolve().parents[2])]
                                               + [p for p in [os.environ.get("PYTHONPATH")] if p])
    device = torch.device("cuda" if cuda else "cpu")
    cores = os.cpu_count() or 1
    name = (f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}" if cuda
            else f"CPU only ({platform.processor() or platform.machine()}, {cores} cores)")
    import ray

    machine = {"device": name, "cpus": cores, "gpus": torch.cuda.device_count() if cuda else 0,
               "platform": platform.platform(), "torch": torch.__version__, "ray": ray.__version__}
    print(f"bench-train · {name} · torch {torch.__version__} · Ray {ray.__version__} · load {load()}", flush=True)

    # (variant, size, run comparison 2) for each configuration
    if args.plan == "make":
        runs = [("b0", 224, True), ("b4", 380, False)] if cuda else [("b0", 64, True)]
        if cuda:
            args.compile = True
        else:
            args.global_batch = args.global_batch or 16  # the pipeline's batch_size on CPU
    else:
        runs = [(args.variant, args.image_size, True)]
    out = args.out or get_settings().home / "bench" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine, "argv": sys.argv[1:] if argv is None else argv, "records": [], "skipped": []}

    def save():
        out.write_text(json.dumps(report, indent=2, default=str))

    b0_rate = None
    for variant, size, with_workers in runs:
        variant = model_lib.variant_name(variant)
        if not args.skip_one_process:
            record = one_process(args, variant, size, cuda, device)
            report["records"].append(record)
            if variant == "efficientnet_b0":
                b0_rate = statistics.median(row["plain"]["images_per_s"] for row in record["rounds"])
            save()
        if not with_workers or args.skip_two_workers:
            continue
        if cuda and torch.cuda.device_count() < args.workers:
            skip = {"variant": variant, "size": size, "comparison": "two-workers",
                    "reason": f"{args.workers} workers with a GPU each need {args.workers} GPUs; this machine has "
                              f"{torch.cuda.device_count()}"}
            print(f"\n== two-worker comparison skipped: {skip['reason']}", flush=True)
            report["skipped"].append(skip)
        else:
            report["records"].append(two_workers(args, variant, size, cuda))
        save()
    if args.plan == "make" and not cuda:
        skip = _b4_skipped(runs[0][1], b0_rate)
        print(f"\n{skip['reason']}", flush=True)
        report["skipped"].append(skip)
    save()
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
