"""The Ray Train per-worker loop, and the pieces it shares with the throughput benchmark.

One code path for CPU and GPU: on CUDA the loop turns on bf16 autocast, ``channels_last``,
``cudnn.benchmark``, fused AdamW and keeps the uint8 training set on the GPU when it fits
(:mod:`components.pneumonia.device_data`; else a pinned-memory loader), and ``torch.compile`` when
asked; on CPU the same code runs under gloo, and every one of those switches can be forced on for
tests. Images travel as uint8 NHWC and are normalised on the device (:class:`DeviceBatch`), which is
the contract's normalisation done where it is cheapest. Shapes stay fixed (training batches drop the
tail, evaluation pads its last batch when compiled), so a compiled model compiles once for training
and once for evaluation.

Every epoch each worker calls ``ray.train.report`` with the metrics; rank 0 attaches a checkpoint
holding the latest state (to resume) and the best weights so far (what training returns).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from components.pneumonia import batching, device_data, preprocess, split
from components.pneumonia import model as model_lib

LATEST = "latest.pt"
BEST = "best_model.pt"
HISTORY = "history.json"
SCRATCH_PREFIX = "pneumonia-ckpt-"  # the per-epoch folders rank 0 writes before reporting them
CONFIG = "train_config.json"

DEFAULTS: dict = {
    "variant": "efficientnet_b0",
    "weights_path": None,
    "epochs": 10,
    "batch_size": 16,  # global; 0 = per device sized for the variant (batching.per_device_batch) × workers
    "lr": 1e-3,
    "lr_scaling": "none",  # "linear" or "sqrt": lr scaled by global batch / lr_reference_batch
    "lr_reference_batch": 16,
    "weight_decay": 1e-4,
    "dropout": 0.2,
    "schedule": "onecycle",  # or "cosine"
    "warmup_epochs": 1,  # cosine only
    "class_weights": True,
    "augment": True,
    "patience": 4,  # epochs without a val AUC gain before stopping; 0 = never stop early
    "min_delta": 1e-4,
    "seed": 0,
    "amp": "auto",  # bf16 autocast on CUDA
    "channels_last": "auto",  # on CUDA
    "cudnn_benchmark": "auto",  # on CUDA: fixed shapes, so the fastest kernels are searched once
    "fused_optimizer": "auto",  # fused AdamW on CUDA: one kernel for all parameters
    "device_data": "auto",  # keep the uint8 training set on CUDA and sample there when it fits
    "device_data_budget": 0.25,  # the share of free device memory it may take
    "compile": False,
    "compile_backend": "inductor",  # "aot_eager" traces the same graphs without generating code (tests)
    "loader_workers": "auto",
    "resume_from": None,  # a checkpoint folder to continue from (Ray's own checkpoint wins when present)
    "max_steps_per_epoch": 0,  # benchmarks only; 0 = whole epoch
}


def resolve_config(config: dict) -> dict:
    unknown = set(config) - set(DEFAULTS) - {"data_dir", "trial"}
    if unknown:
        raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
    return DEFAULTS | config


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class ArrayDataset(Dataset):
    """uint8 (N, H, W, C) images with labels; returns (image, label, index)."""

    def __init__(self, arrays: split.Arrays):
        self.x = torch.from_numpy(np.ascontiguousarray(arrays.x))
        self.y = torch.from_numpy(arrays.y.astype(np.int64))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


@dataclass
class Accel:
    """What this worker's device supports and the config turns on."""

    device: torch.device
    amp: bool
    channels_last: bool
    pin_memory: bool
    loader_workers: int
    cudnn_benchmark: bool = False
    fused_optimizer: bool = False
    device_data: bool = False

    @classmethod
    def choose(cls, device: torch.device, config: dict, cpus: int | None = None) -> Accel:
        cuda = device.type == "cuda"

        def switch(key: str) -> bool:
            return cuda if config[key] == "auto" else bool(config[key])

        workers = config["loader_workers"]
        if workers == "auto":
            # uint8 arrays in memory need no decoding; workers only help to overlap pinned copies
            workers = min(4, cpus or os.cpu_count() or 1) if cuda else 0
        return cls(device, switch("amp") and (not cuda or torch.cuda.is_bf16_supported()), switch("channels_last"),
                   cuda, int(workers), cuda and switch("cudnn_benchmark"), switch("fused_optimizer"),
                   switch("device_data"))

    def configure_backends(self) -> None:
        """Process-wide switches: cuDNN's kernel search for fixed shapes, TF32 for the fp32 parts."""
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.cudnn_benchmark
            torch.set_float32_matmul_precision("high")

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)


class DeviceBatch(nn.Module):
    """uint8 NHWC on the device → normalised float NCHW, with optional light augmentation
    (random shift, scale and rotation; no flips: left/right anatomy is not symmetric)."""

    def __init__(self, contract: preprocess.ImageContract, accel: Accel):
        super().__init__()
        c = contract.channels
        self.register_buffer("mean", torch.tensor(contract.mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(contract.std, dtype=torch.float32).view(1, c, 1, 1))
        self.channels_last = accel.channels_last
        self.to(accel.device)

    def forward(self, images: torch.Tensor, augment: bool = False) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        if augment:
            x = random_affine(x)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()


def random_affine(x: torch.Tensor, shift: float = 0.06, scale: float = 0.06, degrees: float = 6.0) -> torch.Tensor:
    n = x.shape[0]
    angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(degrees)
    s = 1 + (torch.rand(n, device=x.device) * 2 - 1) * scale
    tx, ty = [(torch.rand(n, device=x.device) * 2 - 1) * shift * 2 for _ in range(2)]
    theta = torch.stack([torch.stack([torch.cos(angle) / s, -torch.sin(angle) / s, tx], 1),
                         torch.stack([torch.sin(angle) / s, torch.cos(angle) / s, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def make_loader(arrays: split.Arrays, batch_size: int, shuffle: bool, accel: Accel, seed: int,
                drop_last: bool = False) -> DataLoader:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(ArrayDataset(arrays), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=accel.loader_workers, pin_memory=accel.pin_memory,
                      persistent_workers=accel.loader_workers > 0, generator=generator)


def effective_batch_and_lr(config: dict, world: int, device_type: str, image_size: int) -> tuple[int, float]:
    """(images per worker, peak learning rate): ``batch_size`` 0 sizes the batch per device for the
    variant; ``lr_scaling`` scales ``lr`` by the global batch (:mod:`components.pneumonia.batching`)."""
    if config["batch_size"]:
        per_worker = max(1, config["batch_size"] // world)
    else:
        per_worker = batching.per_device_batch(model_lib.variant_name(config["variant"]), image_size, device_type)
    lr = batching.scaled_lr(config["lr"], per_worker * world, config["lr_reference_batch"], config["lr_scaling"])
    return per_worker, lr


def make_train_batches(arrays: split.Arrays, per_worker_batch: int, accel: Accel, config: dict, rank: int,
                       world: int):
    """This worker's training batches: drawn on the device when ``device_data`` is on and the set fits
    its budget, else a (Ray-prepared, distributed) loader that drops the short last batch."""
    import ray.train.torch

    if accel.device_data and device_data.fits(arrays.x.nbytes, accel.device, config["device_data_budget"]):
        return device_data.DeviceSampler(arrays, per_worker_batch, accel.device, config["seed"], rank, world)
    return ray.train.torch.prepare_data_loader(
        make_loader(arrays, per_worker_batch, True, accel, config["seed"],
                    drop_last=len(arrays) > per_worker_batch * world))


def make_scheduler(optimizer, config: dict, steps_per_epoch: int):
    total = max(1, config["epochs"] * steps_per_epoch)
    if config["schedule"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], total_steps=total,
                                                   pct_start=0.25)
    if config["schedule"] == "cosine":
        warmup = min(total - 1, config["warmup_epochs"] * steps_per_epoch)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise ValueError(f"unknown schedule {config['schedule']!r} (onecycle or cosine)")


def fast_forward(scheduler, steps: int):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended here
        for _ in range(steps):
            scheduler.step()
    return scheduler


def class_weight_tensor(y: np.ndarray, enabled: bool) -> torch.Tensor | None:
    """Inverse-frequency weights, normalised so a balanced set gets (1, 1)."""
    if not enabled:
        return None
    counts = np.bincount(y, minlength=2).astype(np.float64)
    weights = len(y) / (2 * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def train_one_epoch(net, batcher: DeviceBatch, loader, optimizer, scheduler, loss_fn, accel: Accel,
                    augment: bool, max_steps: int = 0) -> tuple[float, int, float]:
    """One pass over ``loader``; returns (mean loss, images seen, seconds)."""
    net.train()
    total_loss, seen, start = 0.0, 0, time.perf_counter()
    for step, (images, labels, _) in enumerate(loader):
        if max_steps and step >= max_steps:
            break
        images = images.to(accel.device, non_blocking=True)
        labels = labels.to(accel.device, non_blocking=True)
        x = batcher(images, augment=augment)
        with accel.autocast():
            loss = loss_fn(net(x).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.detach() * len(labels)  # a tensor: no device sync per step
        seen += len(labels)
    if accel.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return float(total_loss) / max(seen, 1), seen, seconds


@torch.no_grad()
def predict(net, batcher: DeviceBatch, loader, accel: Accel, loss_fn=None, pad_to: int = 0):
    """(P(positive), labels, dataset indices, summed loss) for everything ``loader`` yields.

    Results stay on the device until the end (one transfer, not a host sync per batch). ``pad_to``:
    a shorter batch is padded to this many rows (repeats of its last row) and the padding's outputs
    dropped, so a compiled model never recompiles for the short last batch (rows are independent in
    eval mode)."""
    net.eval()
    probs, labels_all, indices = [], [], []
    loss_sum = torch.zeros((), device=accel.device)
    for images, labels, index in loader:
        images = images.to(accel.device, non_blocking=True)
        labels = labels.to(accel.device, non_blocking=True)
        n = len(labels)
        if n < pad_to:
            images = torch.cat([images, images[-1:].expand(pad_to - n, *images.shape[1:])])
        with accel.autocast():
            logits = net(batcher(images)).float()[:n]
        if loss_fn is not None:
            loss_sum += loss_fn(logits, labels) * n
        probs.append(torch.softmax(logits, 1)[:, 1])
        labels_all.append(labels)
        indices.append(index.to(accel.device, non_blocking=True))
    cat = (lambda t: torch.cat(t).cpu().numpy()) if probs else (lambda t: np.zeros(0))
    return cat(probs), cat(labels_all), cat(indices), float(loss_sum)


def _gather(values: list) -> list:
    """Every rank's ``values`` concatenated (identity without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, values)
    return [v for part in out for v in part]


def _sum(value: float) -> float:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, value)
    return float(sum(parts))


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def _save_checkpoint(folder: Path, net, optimizer, scheduler, epoch: int, state: dict, best_state, config,
                     history) -> None:
    torch.save({"model": model_lib.unwrap(net).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, **state}, folder / LATEST)
    torch.save(best_state, folder / BEST)
    (folder / HISTORY).write_text(json.dumps(history, indent=2))
    (folder / CONFIG).write_text(json.dumps({k: v for k, v in config.items() if k != "trial"}, indent=2,
                                            default=str))


def _load_resume(folder: Path, device) -> tuple[dict, dict, list]:
    """The latest state, the best weights and the history of a checkpoint folder."""
    saved = torch.load(folder / LATEST, map_location=device, weights_only=False)
    best_state = torch.load(folder / BEST, map_location="cpu", weights_only=True)
    return saved, best_state, json.loads((folder / HISTORY).read_text())


def _progress(line: str) -> None:
    """One progress line on the worker's real stdout: Ray Train's patched ``print`` would send it
    through its logger as well, and the driver would show every line twice."""
    sys.__stdout__.write(line + "\n")
    sys.__stdout__.flush()


def build_net(config: dict, channels: int, accel: Accel, wrap):
    """The model as training runs it: channels_last when on, ``wrap`` (Ray's ``prepare_model``, DDP or
    ``.to(device)``), then ``torch.compile`` with the configured backend when ``compile`` is on."""
    net = model_lib.build_model(config["variant"], channels, 2, config["dropout"], config["weights_path"])
    if accel.channels_last:
        net = net.to(memory_format=torch.channels_last)
    net = wrap(net)
    if config["compile"]:
        net = torch.compile(net, backend=config["compile_backend"])
    return net


def make_optimizer(net, config: dict, lr: float, accel: Accel):
    """AdamW, fused (one kernel for all parameters) when ``accel.fused_optimizer``."""
    return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=config["weight_decay"],
                             fused=accel.fused_optimizer or None)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point; ``config`` = :data:`DEFAULTS` overrides + ``data_dir``."""
    import ray.train
    import ray.train.torch

    config = resolve_config(config)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    seed_everything(config["seed"])  # same initial weights everywhere (DDP also broadcasts rank 0's)
    device = ray.train.torch.get_device()
    accel = Accel.choose(device, config)
    data_dir = Path(config["data_dir"])
    contract = split.load_contract(data_dir)
    train_arrays, val_arrays = split.load(data_dir, "train"), split.load(data_dir, "val")

    accel.configure_backends()
    per_worker_batch, lr = effective_batch_and_lr(config, world, device.type, contract.height)
    train_loader = make_train_batches(train_arrays, per_worker_batch, accel, config, rank, world)
    val_loader = ray.train.torch.prepare_data_loader(
        make_loader(val_arrays, per_worker_batch * 2, False, accel, config["seed"]))

    net = build_net(config, contract.channels, accel, ray.train.torch.prepare_model)
    batcher = DeviceBatch(contract, accel)
    weights = class_weight_tensor(train_arrays.y, config["class_weights"])
    loss_fn = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))
    schedule_config = config | {"lr": lr}  # the peak rate; train_config.json keeps the requested one
    optimizer = make_optimizer(net, config, lr, accel)
    steps = len(train_loader) if not config["max_steps_per_epoch"] else min(len(train_loader),
                                                                            config["max_steps_per_epoch"])
    scheduler = make_scheduler(optimizer, schedule_config, steps)

    start_epoch, history = 0, []
    state = {"best_auc": -1.0, "best_epoch": -1, "bad_epochs": 0}
    best_state = None
    resume = ray.train.get_checkpoint()
    restored = None
    if resume is not None:
        # as_directory reads a local checkpoint in place; to_directory would copy it into a
        # temporary folder that nobody removes
        with resume.as_directory() as folder:
            restored = _load_resume(Path(folder), device)
    elif config["resume_from"]:
        restored = _load_resume(Path(config["resume_from"]), device)
    if restored is not None:
        saved, best_state, history = restored
        model_lib.unwrap(net).load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        start_epoch = saved["epoch"] + 1
        # A fresh schedule fast-forwarded, not the saved one: a resumed run may have more epochs,
        # and the learning-rate curve must then follow the new horizon.
        scheduler = fast_forward(make_scheduler(optimizer, schedule_config, steps), start_epoch * steps)
        state = {k: saved[k] for k in state}
        if rank == 0:
            _progress(f"resuming after epoch {saved['epoch'] + 1}")

    local_mode = type(context).__name__ == "LocalTrainContext"
    previous_folder = None
    label = f"trial {config['trial']} · " if config.get("trial") is not None else ""
    for epoch in range(start_epoch, config["epochs"]):
        sampler = train_loader if isinstance(train_loader, device_data.DeviceSampler) else getattr(
            train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        loss, seen, seconds = train_one_epoch(net, batcher, train_loader, optimizer, scheduler, loss_fn, accel,
                                              config["augment"], config["max_steps_per_epoch"])
        probs, labels, indices, val_loss = predict(net, batcher, val_loader, accel, loss_fn,
                                                   pad_to=per_worker_batch * 2 if config["compile"] else 0)
        # The distributed sampler pads shards with repeats: keep each val image once.
        scored = zip(_gather(probs.tolist()), _gather(labels.tolist()), strict=True)
        merged = dict(zip(_gather(indices.tolist()), scored, strict=True))
        p = np.array([v[0] for v in merged.values()])
        y = np.array([v[1] for v in merged.values()], dtype=int)
        images = _sum(seen)
        slowest = max(_gather([seconds]))  # the epoch lasts as long as its slowest worker
        metrics = {
            "epoch": epoch + 1,
            "train_loss": _sum(loss * seen) / max(images, 1),
            "val_loss": _sum(val_loss) / max(_sum(len(labels)), 1),
            "val_auc": auc(y, p),
            "images_per_s": images / max(slowest, 1e-9),
            "lr": optimizer.param_groups[0]["lr"],
            "batch_per_worker": per_worker_batch,
        }
        if config["compile"]:  # graphs compiled so far on this worker: constant after the first epoch
            metrics["compiled_graphs"] = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        improved = metrics["val_auc"] > state["best_auc"] + config["min_delta"]
        if improved or best_state is None:
            state.update(best_auc=max(metrics["val_auc"], state["best_auc"]), best_epoch=epoch + 1, bad_epochs=0)
            best_state = {k: v.detach().cpu().clone() for k, v in model_lib.unwrap(net).state_dict().items()}
        else:
            state["bad_epochs"] += 1
        metrics |= {"best_val_auc": state["best_auc"], "best_epoch": state["best_epoch"]}
        history.append(metrics)
        stop = bool(config["patience"]) and state["bad_epochs"] >= config["patience"]
        if rank == 0:
            _progress(f"{label}epoch {epoch + 1}/{config['epochs']} · loss {metrics['train_loss']:.4f} · "
                      f"val loss {metrics['val_loss']:.4f} · val AUC {metrics['val_auc']:.4f} · "
                      f"{metrics['images_per_s']:.1f} images/s · lr {metrics['lr']:.2e}"
                      + (" · early stop" if stop else ""))
            folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
            _save_checkpoint(folder, net, optimizer, scheduler, epoch, state, best_state, config, history)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
            # Distributed runs upload the checkpoint during report; in-process runs (num_workers=0)
            # hand back this very folder, so only the previous one is stale there.
            if local_mode:
                if previous_folder is not None:
                    shutil.rmtree(previous_folder, ignore_errors=True)
                previous_folder = folder
            else:
                shutil.rmtree(folder, ignore_errors=True)
        else:
            ray.train.report(metrics)
        if stop:  # every rank saw the same gathered AUC, so all stop at the same epoch
            break
