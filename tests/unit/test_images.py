"""Every image of `make images`: its Dockerfile stage exists and lints clean, its base is pinned to an exact
release, it runs as a non-root user, and its requirement set is pinned (and, slow, resolves against the
package index). No Docker engine here: `make images` says so and fails. The GPU training image must hold
every distribution the RayJob's training entry point imports."""

import ast
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from packaging.requirements import Requirement

from components.common import image

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"


def make_images() -> dict[str, tuple[str, str]]:
    """``IMAGES`` of the Makefile: name -> (dockerfile, target)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = re.search(r"^IMAGES\s*:=(.*)$", text, flags=re.MULTILINE).group(1)
    found = {}
    for item in line.split():
        name, _, rest = item.partition("=")
        dockerfile, _, target = rest.partition(":")
        found[name] = (dockerfile, target)
    return found


def dockerfiles() -> list[Path]:
    skip = {".venv", ".venv-drift", ".git", ".envs", ".clinops"}
    return sorted(p for p in ROOT.rglob("*Dockerfile*") if not skip & set(p.relative_to(ROOT).parts))


def stages(dockerfile: Path) -> dict[str, tuple[str, str]]:
    """Each stage's name -> (base, body)."""
    parts = re.split(r"^FROM\s+(\S+)\s+AS\s+(\S+)\s*$", dockerfile.read_text(), flags=re.MULTILINE)
    return {name: (base, body) for base, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True)}


def final_user(dockerfile: Path, target: str) -> str | None:
    """The USER a target runs as, following its chain of stages."""
    found = stages(dockerfile)
    while target in found:
        base, body = found[target]
        users = re.findall(r"^USER\s+(\S+)", body, flags=re.MULTILINE)
        if users:
            return users[-1]
        target = base
    return None


def requirement_lines(path: Path) -> list[Requirement]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_image_has_its_stage_and_every_project_image_is_built():
    images = make_images()
    assert {"clinops", "clinops-train-gpu", "sklearn-predictor", "torch-predictor", "transformer",
            "drift"} == set(images)
    assert set(image.NAMES) <= set(images)
    for name, (dockerfile, target) in images.items():
        assert target in stages(ROOT / dockerfile), f"{name}: no stage {target} in {dockerfile}"


@pytest.mark.parametrize("name", sorted(make_images()))
def test_every_image_runs_as_a_non_root_user(name):
    dockerfile, target = make_images()[name]
    user = final_user(ROOT / dockerfile, target)
    assert user is not None and user not in ("root", "0"), f"{name} runs as {user or 'root'}"


def test_every_base_image_is_an_exact_release():
    externals = set()
    for dockerfile in dockerfiles():
        names = set(stages(dockerfile))
        externals |= {base for base, _ in stages(dockerfile).values() if base not in names}
    assert externals, "no base image found"
    for base in externals:
        # a digest, or a tag naming a patch release (python:3.11.7-slim-bookworm, not python:3.11-slim)
        assert "@sha256:" in base or re.search(r":\d+\.\d+\.\d+", base), f"{base} is not pinned"


def test_hadolint_passes_on_every_dockerfile():
    found = dockerfiles()
    assert {ROOT / "Dockerfile", ROOT / "inference" / "Dockerfile"} <= set(found)
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    done = subprocess.run([hadolint, *map(str, found)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_make_images_fails_clearly_without_a_docker_engine(tmp_path):
    fake = tmp_path / "docker"  # a client whose engine does not answer, as on this machine
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    done = subprocess.run(["make", "--no-print-directory", "images"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "no Docker engine" in done.stderr
    assert ">>" not in done.stdout  # nothing was attempted


def test_image_registry_and_tag_reach_every_image_reference():
    done = subprocess.run(["make", "-n", "--no-print-directory", "images", "IMAGE_REGISTRY=registry.example:5000/ml",
                           "IMAGE_TAG=1.2.3"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "registry.example:5000/ml/$name:1.2.3" in done.stdout
    assert image.image_ref("clinops", "registry.example:5000/ml/", "1.2.3") == "registry.example:5000/ml/clinops:1.2.3"
    with pytest.raises(ValueError, match="unknown image 'nope'"):
        image.image_ref("nope")


def test_the_default_tag_is_the_project_version():
    version = re.search(r"^version\s*=\s*(\S+)", (ROOT / "setup.cfg").read_text(), flags=re.MULTILINE).group(1)
    assert image.DEFAULT_TAG == version


def test_the_main_and_training_requirements_are_pinned_by_the_constraints():
    pinned = {canonical(line.split("==")[0]) for line in (REQUIREMENTS / "constraints.txt").read_text().splitlines()
              if "==" in line}
    for requirements in ("main.txt", "training.txt"):
        names = {canonical(r.name) for r in requirement_lines(REQUIREMENTS / requirements)}
        assert names <= pinned, f"{requirements}: {sorted(names - pinned)} not in constraints.txt"
    training = {canonical(r.name): r for r in requirement_lines(REQUIREMENTS / "training.txt")}
    assert "default" in training["ray"].extras  # the dashboard and job agent KubeRay submits through


def closure(requirements: list[Requirement]) -> set[str]:
    """Distributions a requirement set installs, from the installed metadata of this environment."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in requirements]
    while todo:
        req, extras = todo.pop()
        name = canonical(req.name)
        key = name + "[" + ",".join(sorted(extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        try:
            needs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in needs:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append((dep, frozenset(dep.extras)))
    return {key.split("[")[0] for key in seen}


def imports_of(module: str, seen: set[str] | None = None) -> set[str]:
    """Top-level names a project module imports, anywhere in it, following the project's own modules."""
    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for target in targets:
            top = target.split(".")[0]
            if top in ("components", "bundle"):
                candidate = ROOT / Path(*target.split("."))
                if candidate.is_dir() or candidate.with_suffix(".py").is_file():
                    names |= imports_of(target, seen)
            else:
                names.add(top)
    return names


def test_the_training_image_holds_what_the_training_entry_point_imports():
    imported = imports_of("components.pneumonia.entrypoint")
    assert {"torch", "ray", "optuna"} <= imported
    installed = closure(requirement_lines(REQUIREMENTS / "training.txt"))
    owners = metadata.packages_distributions()
    missing = {}
    for top in imported - set(sys.stdlib_module_names):
        dists = {canonical(d) for d in owners.get(top, [])}
        if not dists & installed:
            missing[top] = sorted(dists) or "not installed here"
    assert not missing, f"requirements/training.txt lacks {missing}"


IMAGE_REQUIREMENTS = {"clinops": ("main.txt", True), "clinops-train-gpu": ("training.txt", True),
                      "sklearn-predictor": ("serving-sklearn.txt", True),
                      "torch-predictor": ("serving-torch.txt", True),
                      "transformer": ("serving-transformer.txt", True), "drift": ("drift.txt", False)}


def build_text(dockerfile: Path, target: str) -> str:
    """The instructions that make a target: its stage, its bases and the stages it copies from."""
    found, text, todo, seen = stages(dockerfile), "", [target], set()
    while todo:
        stage = todo.pop()
        if stage in seen or stage not in found:
            continue
        seen.add(stage)
        base, body = found[stage]
        text += body
        todo += [base, *re.findall(r"COPY\s+--from=(\S+)", body)]
    return text


def test_every_image_installs_the_requirement_set_checked_here():
    assert set(IMAGE_REQUIREMENTS) == set(make_images())
    for name, (requirements, constrained) in IMAGE_REQUIREMENTS.items():
        dockerfile, target = make_images()[name]
        text = build_text(ROOT / dockerfile, target)
        assert f"-r requirements/{requirements}" in text, f"{name} does not install {requirements}"
        assert ("-c requirements/constraints.txt" in text) == constrained, name
        installs = set(re.findall(r"-r requirements/(\S+)", text))
        assert installs == {requirements}, f"{name} installs {sorted(installs)}"


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory) -> dict[str, tuple[int, str, Path]]:
    """pip's dry-run resolution of every image's set as its Dockerfile installs it, into nothing
    (``--ignore-installed``), all started at once: each waits mostly on the index. Name → (exit code,
    stderr, report)."""
    root = tmp_path_factory.mktemp("resolutions")
    started = {}
    for name, (requirements, constrained) in sorted(IMAGE_REQUIREMENTS.items()):
        report = root / f"{name}.json"
        argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
                str(report), "-r", str(REQUIREMENTS / requirements)]
        if constrained:
            argv += ["-c", str(REQUIREMENTS / "constraints.txt")]
        started[name] = (subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                          cwd=ROOT), report)
    done = {}
    for name, (process, report) in started.items():
        _, stderr = process.communicate(timeout=900)
        done[name] = (process.returncode, stderr, report)
    return done


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(IMAGE_REQUIREMENTS))
def test_every_image_requirement_set_resolves_against_the_index(name, resolutions):
    requirements, _ = IMAGE_REQUIREMENTS[name]
    code, stderr, report = resolutions[name]
    assert code == 0, stderr[-3000:]
    resolved = {canonical(i["metadata"]["name"]): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    for req in requirement_lines(REQUIREMENTS / requirements):
        assert canonical(req.name) in resolved
        assert req.specifier.contains(resolved[canonical(req.name)], prereleases=True), (req, resolved[canonical(req.name)])


def test_a_login_shell_in_the_project_images_finds_the_virtualenv(tmp_path):
    """KubeRay runs ``bash -lc 'ray start ...'``; Debian's /etc/profile resets PATH, so the images put the
    virtualenv back from /etc/profile.d. The Dockerfile's own command writes the file here."""
    base = stages(ROOT / "Dockerfile")["python"][1]
    command = re.search(r"^RUN (echo .*) > /etc/profile\.d/venv\.sh$", base, flags=re.MULTILINE).group(1)
    script = tmp_path / "venv.sh"
    subprocess.run(["sh", "-c", f"{command} > {script}"], check=True)
    done = subprocess.run(["bash", "--noprofile", "--norc", "-c", f"PATH=/usr/bin:/bin; . {script}; echo $PATH"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "/opt/venv/bin:/usr/bin:/bin"
    for target in ("clinops", "train-gpu"):  # both images descend from that stage
        assert target in stages(ROOT / "Dockerfile") and "/opt/venv" in build_text(ROOT / "Dockerfile", target)


def mlflow_server() -> dict:
    """The MLflow server's container, as manifests/mlflow renders."""
    from pipelines import manifests

    objects = [o for o in yaml.safe_load_all(manifests.render(ROOT / "manifests" / "mlflow")) if o]
    deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "mlflow")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


BUNDLED_LIBPQ = {"psycopg": "psycopg-binary", "psycopg2": "psycopg2-binary"}


def test_the_mlflow_server_image_holds_the_drivers_of_its_store_uris():
    """``postgresql://`` is SQLAlchemy's psycopg dialect and ``s3://`` MLflow's boto3 artifact repository:
    the image the Deployment runs must install both, or the server fails at its first store access."""
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry
    from sqlalchemy.engine import make_url

    container = mlflow_server()
    args = container["command"] + container["args"]
    assert args[:2] == ["mlflow", "server"]
    backend = args[args.index("--backend-store-uri") + 1]
    artifacts = args[args.index("--artifacts-destination") + 1]
    assert backend.startswith("postgresql://") and artifacts.startswith("s3://")
    name = container["image"].rsplit("/", 1)[-1].split(":")[0]
    installed = closure(requirement_lines(REQUIREMENTS / IMAGE_REQUIREMENTS[name][0]))
    owners = metadata.packages_distributions()

    dialect = make_url(re.sub(r"\$\((\w+)\)", "x", backend)).get_dialect()  # $(VAR): set from the Secret
    driver = dialect.import_dbapi().__name__  # SQLAlchemy 2.1 picks psycopg (3) for postgresql://
    assert {canonical(d) for d in owners.get(driver, [])} & installed, \
        f"{name} ({IMAGE_REQUIREMENTS[name][0]}) has no {driver} for {backend.split(':')[0]}://"
    # the slim base has no libpq: the driver must bring its own
    assert BUNDLED_LIBPQ[driver] in installed, f"{name}: {driver} without {BUNDLED_LIBPQ[driver]} finds no libpq"

    repository = _artifact_repository_registry._registry[urlparse(artifacts).scheme]
    source = Path(inspect.getsourcefile(repository)).read_text()
    assert "import boto3" in source  # what MLflow's S3 artifact repository needs
    assert "boto3" in installed, f"{name} ({IMAGE_REQUIREMENTS[name][0]}) has no boto3 for s3:// artifacts"


def test_the_component_image_carries_where_the_images_were_pushed(monkeypatch):
    """``make images`` passes its registry and tag as build arguments; the clinops image turns them into the
    settings the deploy step names serving images by, with the same defaults as components/common/image.py."""
    from components.common.settings import Settings

    body = build_text(ROOT / "Dockerfile", "clinops")
    args = dict(re.findall(r"^ARG (IMAGE_REGISTRY|IMAGE_TAG)=(\S+)$", body, flags=re.MULTILINE))
    assert args == {"IMAGE_REGISTRY": image.DEFAULT_REGISTRY, "IMAGE_TAG": image.DEFAULT_TAG}
    env = re.search(r"^ENV (.*)$", stages(ROOT / "Dockerfile")["clinops"][1], flags=re.MULTILINE).group(1)
    assert {"CLINOPS_IMAGE_REGISTRY=${IMAGE_REGISTRY}", "CLINOPS_IMAGE_TAG=${IMAGE_TAG}"} <= set(env.split())
    done = subprocess.run(["make", "-n", "--no-print-directory", "images", "IMAGE_REGISTRY=registry.example/ml",
                           "IMAGE_TAG=1.2.3"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "--build-arg IMAGE_REGISTRY=registry.example/ml --build-arg IMAGE_TAG=1.2.3" in done.stdout
    monkeypatch.setenv("CLINOPS_IMAGE_REGISTRY", "registry.example/ml")
    monkeypatch.setenv("CLINOPS_IMAGE_TAG", "1.2.3")
    assert (Settings().image_registry, Settings().image_tag) == ("registry.example/ml", "1.2.3")
    monkeypatch.delenv("CLINOPS_IMAGE_REGISTRY")
    monkeypatch.delenv("CLINOPS_IMAGE_TAG")
    assert (Settings().image_registry, Settings().image_tag) == (image.DEFAULT_REGISTRY, image.DEFAULT_TAG)
