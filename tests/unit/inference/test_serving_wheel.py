"""The serving images install one wheel built by inference/Dockerfile's ``wheel`` stage. This builds it the
way that stage does (no Docker engine here): exactly the paths its ``COPY`` lines name, copied into an
empty folder, then ``pip wheel --no-deps``; the wheel must hold the bundle contract and the serving code
and nothing of training, the pipelines or the tests."""

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from bundle import workloads

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "inference" / "Dockerfile"


def wheel_stage() -> list[str]:
    """The instructions of the ``wheel`` stage, one string each (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines, inside = [], False
    for line in text.splitlines():
        line = line.strip()
        if line.upper().startswith("FROM "):
            inside = re.fullmatch(r"FROM\s+\S+\s+AS\s+wheel", line, flags=re.IGNORECASE) is not None
        elif inside and line and not line.startswith("#"):
            lines.append(line)
    return lines


def copies() -> list[tuple[list[str], str]]:
    """``(sources, destination)`` of every ``COPY`` of the wheel stage, relative to its WORKDIR."""
    found = []
    for line in wheel_stage():
        words = shlex.split(line)
        if words[0].upper() != "COPY":
            continue
        *sources, dest = [w for w in words[1:] if not w.startswith("--")]
        assert not PurePosixPath(dest).is_absolute(), f"{line}: the test expects a destination under WORKDIR"
        found.append((sources, dest))
    return found


def build_context(folder: Path) -> Path:
    """What the wheel stage's WORKDIR holds before ``pip wheel``: the COPY lines applied to ``folder``."""
    for sources, dest in copies():
        target = folder / dest
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: not in the repository"
            if path.is_dir():  # Docker copies a folder's contents into the destination
                shutil.copytree(path, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif dest.endswith("/") or len(sources) > 1:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return folder


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, Path]:
    """``(wheel file, build context)``, built once for this module."""
    context = build_context(tmp_path_factory.mktemp("wheel-context"))
    out = tmp_path_factory.mktemp("wheels")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                           "--disable-pip-version-check", "-q", "-w", str(out), str(context)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("*.whl")
    return built, context


def test_the_wheel_stage_copies_only_the_contract_and_the_serving_code():
    assert copies() == [(["setup.cfg", "pyproject.toml", "README.md"], "./"), (["bundle/"], "bundle/"),
                        (["inference/"], "inference/")]
    assert any(line.startswith("RUN pip wheel --no-deps") for line in wheel_stage())


def test_the_wheel_holds_the_bundle_contract_and_every_serving_module(wheel):
    built, context = wheel
    names = set(zipfile.ZipFile(built).namelist())
    copied = {p.relative_to(context).as_posix() for package in ("bundle", "inference")
              for p in (context / package).rglob("*.py")}
    assert {"bundle/__init__.py", "bundle/reader.py", "bundle/workloads.py", "inference/__init__.py",
            "inference/transformer/__main__.py"} <= copied
    missing = sorted(copied - names)
    assert not missing, f"modules copied but not packaged (a folder without __init__.py?): {missing}"
    for workload in workloads.WORKLOADS.values():  # every predictor the catalog names can start from the wheel
        assert f"{workload.predictor_runtime.replace('.', '/')}/__main__.py" in names, workload.name


def test_the_wheel_holds_nothing_of_training_pipelines_or_tests(wheel):
    built, _ = wheel
    names = zipfile.ZipFile(built).namelist()
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"bundle", "inference"}
    assert "pipelines/local_stack.py" not in names
    for forbidden in ("components/", "pipelines/", "tests/"):
        assert not [n for n in names if n.startswith(forbidden)], forbidden
