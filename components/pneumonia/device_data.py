"""The training set kept on the accelerator as uint8 and sampled there.

A chest X-ray set at 224 px is ~50 KB an image as uint8: 5,000 images are 250 MB, a small part of a
GPU's memory. Held there, an epoch is a device-side permutation and ``index_select`` per batch: no
loader processes, no pinned staging, no host→device copy in the hot loop (the CPU loader is what
starves a fast GPU at EfficientNet-B0's thousands of images a second). When the set does not fit the
budget, training keeps the CPU ``DataLoader``.

Sharding follows ``DistributedSampler``'s contract (same seeded permutation on every rank, rank
``r`` takes every ``world``-th index) but drops the tail instead of padding with repeats, and every
batch has the same size: a compiled model never sees a short last batch.
"""

from __future__ import annotations

import torch

from components.pneumonia import split


def fits(n_bytes: int, device: torch.device, budget_fraction: float) -> bool:
    """Whether ``n_bytes`` fit in ``budget_fraction`` of the device's free memory (CPU: always)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes <= budget_fraction * free


class DeviceSampler:
    """Batches ``(images uint8 NHWC, labels int64, dataset indices)`` drawn from tensors on ``device``.

    Iterating yields ``len(self)`` batches of exactly ``batch_size`` rows (``batch_size`` shrinks to the
    shard when the shard is smaller); :meth:`set_epoch` reseeds the shuffle as ``DistributedSampler``'s does.
    """

    def __init__(self, arrays: split.Arrays, batch_size: int, device: torch.device, seed: int,
                 rank: int = 0, world: int = 1, shuffle: bool = True):
        self.x = torch.from_numpy(arrays.x).to(device)
        self.y = torch.from_numpy(arrays.y.astype("int64")).to(device)
        self.device, self.seed, self.rank, self.world, self.shuffle = device, seed, rank, world, shuffle
        self.per_rank = len(self.y) // world
        if self.per_rank == 0:
            raise ValueError(f"{len(self.y)} training images cannot be shared by {world} workers")
        self.batch_size = min(batch_size, self.per_rank)
        self.epoch = 0
        self.generator = torch.Generator(device=device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank // self.batch_size

    def __iter__(self):
        n = len(self.y)
        if self.shuffle:
            self.generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=self.generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        mine = order[: self.per_rank * self.world][self.rank:: self.world]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = mine[start: start + self.batch_size]
            yield self.x.index_select(0, index), self.y.index_select(0, index), index
