"""The GPU training paths on CPU, one process: bf16 autocast and channels_last through a training epoch
and prediction, device-side sampling, evaluation padding under compile, batch and learning-rate
sizing, and where Ray Train's checkpoints go."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.pneumonia import batching, device_data, preprocess, ray_storage, rayjob, split, train_loop
from components.pneumonia import model as model_lib

pytestmark = pytest.mark.unit

FORCED = {"amp": True, "channels_last": True, "fused_optimizer": True, "device_data": True}


def _arrays(n: int, size: int = 32, seed: int = 0) -> split.Arrays:
    rng = np.random.default_rng(seed)
    return split.Arrays(rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8), np.arange(n) % 2)


def test_bf16_channels_last_epoch_and_prediction_on_cpu():
    """EfficientNet-B0 at 32 px: one epoch with every GPU switch forced, then prediction under bf16
    that agrees with fp32 prediction of the same weights."""
    config = train_loop.resolve_config({"epochs": 1, "augment": True} | FORCED)
    accel = train_loop.Accel.choose(torch.device("cpu"), config)
    assert (accel.amp, accel.channels_last, accel.fused_optimizer, accel.device_data) == (True, True, True, True)
    torch.manual_seed(0)
    contract = preprocess.ImageContract(32, 32, 1, (0.5,), (0.25,))
    net = model_lib.build_model("efficientnet_b0", 1, 2).to(memory_format=torch.channels_last)
    batcher = train_loop.DeviceBatch(contract, accel)
    train = device_data.DeviceSampler(_arrays(20), 8, accel.device, seed=0)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=True)
    scheduler = train_loop.make_scheduler(optimizer, config, len(train))
    before = net.classifier[-1].weight.detach().clone()
    loss, seen, _ = train_loop.train_one_epoch(net, batcher, train, optimizer, scheduler,
                                               torch.nn.CrossEntropyLoss(), accel, augment=True)
    assert seen == 16 and np.isfinite(loss)  # 2 full batches of 8; the 4 left over are dropped
    assert not torch.equal(before, net.classifier[-1].weight)
    assert net.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)

    x = batcher(torch.from_numpy(_arrays(4).x))
    assert x.is_contiguous(memory_format=torch.channels_last)
    net.eval()
    with torch.no_grad(), accel.autocast():
        assert net(x).dtype == torch.bfloat16

    val = _arrays(10, seed=1)
    loader = train_loop.make_loader(val, 4, False, accel, seed=0)
    p16, y, index, loss16 = train_loop.predict(net, batcher, loader, accel, torch.nn.CrossEntropyLoss())
    fp32 = train_loop.Accel.choose(torch.device("cpu"), config | {"amp": False})
    p32, _, _, loss32 = train_loop.predict(net, batcher, loader, fp32, torch.nn.CrossEntropyLoss())
    assert p16.shape == (10,) and list(index) == list(range(10)) and list(y) == list(val.y)
    np.testing.assert_allclose(p16, p32, atol=0.05)
    assert loss16 == pytest.approx(loss32, rel=0.05)


def test_evaluation_pads_its_short_last_batch_so_a_compiled_model_compiles_once():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    compiled = torch.compile(net, backend="aot_eager")
    accel = train_loop.Accel.choose(torch.device("cpu"), train_loop.resolve_config({}))
    batcher = train_loop.DeviceBatch(preprocess.ImageContract(8, 8, 1, (0.5,), (0.25,)), accel)
    val = _arrays(10, size=8)  # batches of 4: 4, 4, 2
    loader = train_loop.make_loader(val, 4, False, accel, seed=0)

    padded = train_loop.predict(compiled, batcher, loader, accel, pad_to=4)
    assert counters["stats"]["unique_graphs"] == 1
    plain = train_loop.predict(net, batcher, loader, accel)
    np.testing.assert_allclose(padded[0], plain[0], rtol=1e-5)  # the padding's outputs are dropped
    assert list(padded[2]) == list(range(10))

    train_loop.predict(compiled, batcher, loader, accel)  # unpadded: the 2-row batch compiles again
    assert counters["stats"]["unique_graphs"] == 2
    torch._dynamo.reset()


def test_device_sampler_shards_like_distributed_sampler_with_full_batches():
    arrays = _arrays(23)
    shards = [device_data.DeviceSampler(arrays, 4, torch.device("cpu"), seed=5, rank=r, world=2) for r in (0, 1)]
    orders = []
    for epoch in (0, 1):
        seen = []
        for sampler in shards:
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert len(batches) == len(sampler) == 2 and all(len(b[0]) == 4 for b in batches)  # 11 a rank: 3 dropped
            for images, labels, index in batches:
                assert torch.equal(images, torch.from_numpy(arrays.x)[index])
                assert torch.equal(labels, torch.from_numpy(arrays.y)[index])
            seen += [int(i) for b in batches for i in b[2]]
        assert len(seen) == len(set(seen)) == 16  # the two ranks never share an image
        orders.append(seen)
    assert orders[0] != orders[1]  # reshuffled per epoch
    assert device_data.DeviceSampler(_arrays(3), 8, torch.device("cpu"), 0).batch_size == 3
    with pytest.raises(ValueError, match="3 training images cannot be shared by 4 workers"):
        device_data.DeviceSampler(_arrays(3), 8, torch.device("cpu"), 0, rank=0, world=4)
    assert device_data.fits(10**15, torch.device("cpu"), 0.25)


@pytest.mark.parametrize(("variant", "size", "device", "expected"), [
    ("efficientnet_b0", 224, "cuda", 256), ("efficientnet_b4", 380, "cuda", 64), ("efficientnet_b0", 448, "cuda", 64),
    ("efficientnet_b4", 224, "cuda", 184), ("efficientnet_b0", 64, "cuda", 1024), ("efficientnet_b4", 1900, "cuda", 8),
    ("efficientnet_b0", 224, "cpu", 16)])
def test_batch_per_device_is_sized_for_the_variant(variant, size, device, expected):
    assert batching.per_device_batch(variant, size, device) == expected


def test_learning_rate_scales_with_the_global_batch():
    assert batching.scaled_lr(1e-3, 256, 16, "linear") == pytest.approx(16e-3)
    assert batching.scaled_lr(1e-3, 256, 16, "sqrt") == pytest.approx(4e-3)
    assert batching.scaled_lr(1e-3, 256, 16, "none") == 1e-3
    with pytest.raises(ValueError, match="unknown lr_scaling 'cubic'"):
        batching.scaled_lr(1e-3, 256, 16, "cubic")
    config = train_loop.resolve_config({"batch_size": 0, "lr_scaling": "sqrt", "variant": "b4"})
    assert train_loop.effective_batch_and_lr(config, 2, "cuda", 380) == (64, pytest.approx(1e-3 * 8 ** 0.5))
    assert train_loop.effective_batch_and_lr(train_loop.resolve_config({"batch_size": 32}), 2, "cuda", 224) == (
        16, 1e-3)


def test_s3_storage_becomes_a_pyarrow_filesystem_with_the_project_connection():
    import pyarrow.fs

    from bundle.storage import S3Config

    storage = ray_storage.resolve("s3://ray-runs/pneumonia/", S3Config("http://minio:9000", "k", "s", None))
    assert storage.path == "ray-runs/pneumonia" and storage.remote
    assert storage.filesystem.equals(pyarrow.fs.S3FileSystem(
        access_key="k", secret_key="s", region="us-east-1", endpoint_override="minio:9000", scheme="http",
        force_virtual_addressing=False, allow_bucket_creation=True))
    assert storage.run_path("trial-0") == "ray-runs/pneumonia/trial-0"
    local = ray_storage.resolve("/data/ray")
    assert local == ray_storage.RayStorage("/data/ray") and not local.remote


def test_an_s3_run_without_a_local_copy_is_refused_before_ray_starts(tmp_path):
    from components.pneumonia import trainer

    with pytest.raises(ValueError, match="needs copy_to"):
        trainer.fit({"data_dir": str(tmp_path)}, 0, False, "s3://ray-runs/x", "x")


def test_delete_run_removes_one_run_from_s3(s3_server):
    from components.common.settings import get_settings

    storage = ray_storage.resolve("s3://ray-runs/pneumonia", get_settings().s3)
    storage.filesystem.create_dir(storage.path)  # creates the bucket, as Ray Train's first write does
    for run in ("a", "b"):
        with storage.filesystem.open_output_stream(f"{storage.run_path(run)}/checkpoint/latest.pt") as out:
            out.write(b"x")
    storage.delete_run("a")
    storage.delete_run("never-ran")
    objects = get_settings().s3.client().list_objects("ray-runs", recursive=True)
    files = [o.object_name for o in objects if not o.object_name.endswith("/")]  # not pyarrow's folder markers
    assert files == ["pneumonia/b/checkpoint/latest.pt"]


def test_rayjobs_checkpoint_to_shared_storage_by_default(monkeypatch):
    spec = rayjob.RayJobSpec(name="j", namespace="ml", image="i", data_uri="s3://d", output_uri="s3://o")
    assert "--ray-storage s3://clinops/pneumonia/ray" in rayjob.entrypoint(spec)
    monkeypatch.setenv("CLINOPS_PNEUMONIA_RAYJOB_STORAGE", "s3://team-bucket/ray")
    spec = rayjob.RayJobSpec(name="j", namespace="ml", image="i", data_uri="s3://d", output_uri="s3://o")
    assert "--ray-storage s3://team-bucket/ray" in rayjob.build_rayjob(spec)["spec"]["entrypoint"]
    assert "--ray-storage s3://clinops/pneumonia/ray" in rayjob.load_template()["spec"]["entrypoint"]
