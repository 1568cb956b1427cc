"""The serving images (inference/Dockerfile): every target installs an existing requirement file whose
packages are all pinned by constraints.txt, starts a runtime that exists, lints clean, and each runtime
imports nothing its image does not install: its requirements and the serving wheel (the bundle contract and
inference/; what that wheel holds is checked by test_serving_wheel.py). (No Docker engine here: the images
themselves are not built; tests/integration/serving/test_runtime_environments.py serves from the same
requirement sets.)"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bundle import workloads

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "inference" / "Dockerfile"
TARGETS = {"sklearn-predictor": ("serving-sklearn.txt", "inference.sklearn_predictor"),
           "torch-predictor": ("serving-torch.txt", "inference.torch_predictor"),
           "transformer": ("serving-transformer.txt", "inference.transformer")}
# what no serving image installs (the wheel holds only bundle/ and inference/); per runtime, the other
# runtime's framework as well
NEVER = {"mlflow", "ray", "kfp", "optuna", "evidently", "matplotlib", "torchvision", "pipelines", "components"}
IMPORTS = {"inference.sklearn_predictor": ("inference.sklearn_predictor.__main__", "inference.sklearn_predictor.model",
                                           NEVER | {"torch"}),
           "inference.torch_predictor": ("inference.torch_predictor.__main__", "inference.torch_predictor.model",
                                         NEVER | {"sklearn"}),
           "inference.transformer": ("inference.transformer.__main__", "inference.transformer.model",
                                     NEVER | {"torch", "sklearn"})}


def stages() -> dict[str, str]:
    """Each ``FROM ... AS name`` stage's text."""
    text = DOCKERFILE.read_text()
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def requirement_names(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(re.split(r"[\[<>=!~ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_every_runtime_has_a_target_that_installs_its_requirements_and_starts_it():
    found = stages()
    assert set(TARGETS) <= set(found)
    for target, (requirements, module) in TARGETS.items():
        body = found[target]
        assert f"-r requirements/{requirements}" in body, target
        assert "-c requirements/constraints.txt" in body, target
        assert f'"-m", "{module}"' in body, target
        assert (ROOT / "requirements" / requirements).is_file()
        assert (ROOT / Path(*module.split(".")) / "__main__.py").is_file()
        assert "USER 1000" in body, f"{target} must not run as root"


def test_every_predictor_runtime_of_the_workload_catalog_has_an_image():
    runtimes = {module for _, module in TARGETS.values()}
    for workload in workloads.WORKLOADS.values():
        assert workload.predictor_runtime in runtimes, workload.name


def test_every_serving_requirement_is_pinned_by_the_constraints():
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in
              (ROOT / "requirements" / "constraints.txt").read_text().splitlines() if "==" in line}
    for requirements, _ in TARGETS.values():
        names = requirement_names(ROOT / "requirements" / requirements)
        assert "kserve" in names
        assert set(names) <= pinned, f"{requirements}: {sorted(set(names) - pinned)} not in constraints.txt"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "inference/Dockerfile"])
def test_dockerfiles_lint_clean(dockerfile):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    done = subprocess.run([hadolint, str(ROOT / dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("runtime", sorted(IMPORTS))
def test_a_runtime_imports_nothing_its_image_lacks(runtime):
    main, model, forbidden = IMPORTS[runtime]
    code = (f"import sys, {main}, {model}\n"
            f"print(sorted(m for m in {sorted(forbidden)!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", f"{runtime} imports {done.stdout.strip()}"


def test_the_drift_image_installs_its_own_environment_and_starts_the_sidecar():
    body = stages()["drift"]
    assert "-r requirements/drift.txt" in body and "constraints.txt" not in body  # another resolve entirely
    assert '"-m", "inference.drift"' in body and "USER 1000" in body
    pins = dict(line.split("#", 1)[0].strip().split("==") for line in
                (ROOT / "requirements" / "drift.txt").read_text().splitlines() if "==" in line)
    assert pins["alibi-detect"] == "0.11.4"  # the last Apache-2.0 release; later ones are BSL
    assert pins["numpy"].startswith("1.24")


def test_the_drift_sidecar_imports_nothing_of_the_main_environment():
    """Under the drift environment's interpreter, which has no kserve, torch or pydantic 2 at all."""
    from pipelines.local_stack import drift_python

    if not Path(drift_python()).exists():
        pytest.fail(f"no drift environment at {drift_python()}: `make venv` builds it")
    forbidden = sorted(NEVER | {"kserve", "torch", "sklearn", "pydantic_settings", "fastapi"})
    code = ("import sys, inference.drift.__main__, inference.drift.app, inference.drift.detectors\n"
            f"print(sorted(m for m in {forbidden!r} if m in sys.modules))")
    done = subprocess.run([drift_python(), "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
