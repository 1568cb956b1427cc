"""Model code (EfficientNet variants, channels, weights files, TorchScript contract, Grad-CAM,
training helpers) and the RayJob builder and status handling against a fake Kubernetes API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from bundle.schema import ImagePreprocessing
from components.pneumonia import evaluation, export, model, preprocess, rayjob, train_loop

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("variant,dim", [("b0", 1280), ("efficientnet_b2", 1408)])
def test_build_model_heads_channels_and_embedding(variant, dim):
    net = model.build_model(variant, in_channels=1).eval()
    logits, embedding = model.logits_and_embedding(net, torch.zeros(2, 1, 48, 48))
    assert logits.shape == (2, 2) and embedding.shape == (2, dim) and model.embedding_dim(net) == dim
    torch.testing.assert_close(net(torch.zeros(2, 1, 48, 48)), logits)
    with pytest.raises(ValueError, match="unknown variant"):
        model.build_model("b9")


def test_local_weights_file_is_used_and_the_stem_folded_to_one_channel(tmp_path):
    torch.manual_seed(0)
    rgb = model.build_model("b0", in_channels=3, num_classes=1000)
    path = tmp_path / "b0.pth"
    torch.save({"state_dict": rgb.state_dict()}, path)
    gray = model.build_model("b0", in_channels=1, weights_path=str(path))
    stem_rgb, stem_gray = rgb.features[0][0].weight, gray.features[0][0].weight
    torch.testing.assert_close(stem_gray, stem_rgb.sum(dim=1, keepdim=True))
    torch.testing.assert_close(gray.features[3][0].block[0][0].weight, rgb.features[3][0].block[0][0].weight)
    assert gray.classifier[-1].out_features == 2
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="does not fit"):
        model.build_model("b0", weights_path=str(tmp_path / "wrong.pth"))


def test_torchscript_contract_matches_eager_model(tmp_path):
    net = model.build_model("b0", in_channels=1).eval()
    contract = preprocess.ImageContract(40, 48, 1, (0.4,), (0.2,))
    scripted = export.script_model(net, contract)
    scripted.save(str(tmp_path / "model.pt"))
    loaded = torch.jit.load(str(tmp_path / "model.pt"))
    x = torch.randn(5, 1, 40, 48)  # another batch size than the trace's
    logits, embedding = loaded(x)
    ref_logits, ref_embedding = model.logits_and_embedding(net, x)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(embedding, ref_embedding, rtol=1e-4, atol=1e-5)
    schema = export.schema(contract, 0.3)
    assert schema.image == ImagePreprocessing(40, 48, 1, (0.4,), (0.2,), "resize")
    assert schema.classes == ("NORMAL", "PNEUMONIA") and schema.positive_class == "PNEUMONIA"
    assert schema.threshold == 0.3


def test_grad_cam_shape_and_range():
    net = model.build_model("b0", in_channels=1).eval()
    cam = evaluation.grad_cam(net, torch.randn(3, 1, 64, 64))
    assert cam.shape == (3, 64, 64) and cam.min() >= 0 and cam.max() <= 1


def test_device_batch_normalises_like_the_serving_contract():
    contract = preprocess.ImageContract(16, 16, 3, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    accel = train_loop.Accel.choose(torch.device("cpu"), train_loop.resolve_config({}))
    assert not accel.amp and not accel.channels_last and accel.loader_workers == 0
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    out = train_loop.DeviceBatch(contract, accel)(torch.from_numpy(images))
    np.testing.assert_allclose(out.numpy(), preprocess.normalise(images, contract), atol=1e-5)
    augmented = train_loop.DeviceBatch(contract, accel)(torch.from_numpy(images), augment=True)
    assert augmented.shape == out.shape and not torch.allclose(augmented, out)


def test_class_weights_and_schedules():
    weights = train_loop.class_weight_tensor(np.array([0] * 30 + [1] * 90), True)
    torch.testing.assert_close(weights, torch.tensor([2.0, 2 / 3]))
    assert train_loop.class_weight_tensor(np.array([0, 1]), False) is None
    for schedule in ("onecycle", "cosine"):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        config = train_loop.resolve_config({"epochs": 4, "lr": 0.1, "schedule": schedule})
        sched = train_loop.make_scheduler(opt, config, steps_per_epoch=5)
        lrs = []
        for _ in range(20):
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        assert max(lrs) == pytest.approx(0.1, rel=0.05) and lrs[-1] < 0.01
    with pytest.raises(ValueError, match="unknown training options"):
        train_loop.resolve_config({"learning_rate": 1})


# ---- RayJob -------------------------------------------------------------------------------------

def _spec(**kw):
    return rayjob.RayJobSpec(name="pneumonia-train-run-1", namespace="ml", image="registry/clinops:9",
                             data_uri="s3://mlpipeline/run/splits", output_uri="s3://mlpipeline/run/model",
                             train_config={"epochs": 20, "variant": "efficientnet_b4"}, n_trials=6,
                             num_workers=4, env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"}, **kw)


def test_rayjob_object_from_the_manifest_template():
    body = rayjob.build_rayjob(_spec())
    assert body["apiVersion"] == "ray.io/v1" and body["kind"] == "RayJob"
    assert body["metadata"] == {**body["metadata"], "name": "pneumonia-train-run-1", "namespace": "ml"}
    job = body["spec"]
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] == 3600
    assert job["submissionMode"] == "K8sJobMode"
    entry = job["entrypoint"]
    assert entry.startswith("python -m components.pneumonia.entrypoint ")
    for part in ("--data-uri s3://mlpipeline/run/splits", "--output-uri s3://mlpipeline/run/model",
                 "--n-trials 6", "--num-workers 4", "--use-gpu"):
        assert part in entry
    assert json.loads(entry.split("--config ")[1].split(" --n-trials")[0].strip("'")) == {
        "epochs": 20, "variant": "efficientnet_b4"}
    assert yaml.safe_load(job["runtimeEnvYAML"])["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    head = job["rayClusterSpec"]["headGroupSpec"]
    assert head["template"]["spec"]["containers"][0]["image"] == "registry/clinops:9"
    assert head["rayStartParams"]["num-cpus"] == "0"
    (group,) = job["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 4
    worker = group["template"]["spec"]["containers"][0]
    assert worker["image"] == "registry/clinops:9"
    assert worker["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert worker["resources"]["requests"] == worker["resources"]["limits"]
    assert group["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_rayjob_cpu_variant_and_names():
    body = rayjob.build_rayjob(_spec(use_gpu=False, service_account="pipeline-runner"))
    (group,) = body["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert "nvidia.com/gpu" not in group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "tolerations" not in group["template"]["spec"] and "--use-gpu" not in body["spec"]["entrypoint"]
    assert group["template"]["spec"]["serviceAccountName"] == "pipeline-runner"
    name = rayjob.job_name("Pneumonia_2026-11-23 12:00:00.123456-a-very-long-run-identifier")
    assert len(name) <= 47 and name == name.lower() and not name.endswith("-")
    assert all(ch.isalnum() or ch == "-" for ch in name)
    with pytest.raises(ValueError, match="ray.io/v1"):
        rayjob.build_rayjob(_spec(), {"apiVersion": "v1", "kind": "Pod"})


class FakeCustomObjects:
    """Just the CustomObjectsApi calls rayjob.py makes; statuses advance one per poll."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.created = []
        self.polls = 0

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("ray.io", "v1", "rayjobs")
        self.created.append((namespace, body))
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        status = self.statuses[min(self.polls, len(self.statuses) - 1)]
        self.polls += 1
        return {"metadata": {"name": name}, "status": status}


class FakeCore:
    def __init__(self, log):
        self.log = log

    def list_namespaced_pod(self, namespace, label_selector):
        assert label_selector == "job-name=pneumonia-train-run-1"
        pod = type("Pod", (), {"metadata": type("Meta", (), {"name": "submitter-abc"})()})()
        return type("List", (), {"items": [pod]})()

    def read_namespaced_pod_log(self, name, namespace, tail_lines):
        return self.log


RUNNING = [{}, {"jobDeploymentStatus": "Initializing"}, {"jobDeploymentStatus": "Running", "jobStatus": "PENDING"},
           {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}]


def test_rayjob_run_waits_for_success_and_surfaces_logs():
    api = FakeCustomObjects(RUNNING + [{"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}])
    sleeps = []
    status, logs = rayjob.run(_spec(), api, FakeCore('epoch 1/2\n{"best_val_auc": 0.97, "best_trial": 2}\n'),
                              poll_s=5, sleep=sleeps.append)
    assert status.succeeded and status.deployment_status == "Complete"
    assert api.created[0][0] == "ml" and api.created[0][1]["kind"] == "RayJob"
    assert sleeps == [5] * 4 and api.polls == 5
    assert rayjob.result_line(logs) == {"best_val_auc": 0.97, "best_trial": 2}
    assert rayjob.result_line("no json here") == {}


@pytest.mark.parametrize("final", [
    {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "message": "worker OOMKilled"},
    {"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"},
    {"jobDeploymentStatus": "ValidationFailed", "message": "bad spec"},
])
def test_rayjob_failures_raise_with_status_and_logs(final):
    api = FakeCustomObjects(RUNNING[:2] + [final])
    with pytest.raises(rayjob.RayJobFailed) as caught:
        rayjob.run(_spec(), api, FakeCore("Traceback: CUDA error"), sleep=lambda s: None)
    assert caught.value.status.deployment_status == final["jobDeploymentStatus"]
    assert caught.value.logs == "Traceback: CUDA error"
    assert final.get("message", "") in str(caught.value)


def test_rayjob_wait_times_out():
    now = [0.0]
    api = FakeCustomObjects(RUNNING)

    def sleep(seconds):
        now[0] += seconds

    with pytest.raises(TimeoutError, match="not finished after 60 s"):
        rayjob.wait(api, "pneumonia-train-run-1", "ml", timeout_s=60, poll_s=10, sleep=sleep, clock=lambda: now[0])
    assert api.polls == 7


def test_manifests_parse():
    from pathlib import Path

    folder = Path(rayjob.TEMPLATE).parent
    template = rayjob.load_template()
    assert template["spec"]["rayClusterSpec"]["rayVersion"] == "2.60.0"
    kinds = [doc["kind"] for doc in yaml.safe_load_all((folder / "rbac.yaml").read_text())]
    assert kinds == ["Role", "RoleBinding"]


@pytest.mark.parametrize(("workers", "gpu", "cpus", "total", "expected"), [
    (2, True, 1.0, {"CPU": 16.0, "GPU": 1.0}, "need 2 GPUs (the Ray cluster has 1): lower num_workers to the number"),
    (1, True, 1.0, {"CPU": 16.0, "GPU": 1.0}, None),
    (2, False, 1.0, {"CPU": 2.0}, None),
    (2, False, 1.5, {"CPU": 2.0}, "need 3 CPUs (the Ray cluster has 2)"),
    (2, True, 4.0, {"CPU": 4.0}, "need 2 GPUs (the Ray cluster has 0) and 8 CPUs (the Ray cluster has 4)"),
])
def test_resource_shortfall_is_named_before_ray_train_starts(workers, gpu, cpus, total, expected):
    from components.pneumonia.trainer import shortfall

    found = shortfall(workers, gpu, cpus, total)
    assert found is None if expected is None else expected in found


def test_ray_train_retries_nothing_not_even_a_worker_group_that_cannot_start():
    from components.pneumonia.trainer import failure_config

    config = failure_config()
    # -1 (Ray's default for controller failures) retries a worker group start-up timeout forever
    assert (config.max_failures, config.controller_failure_limit) == (0, 0)
