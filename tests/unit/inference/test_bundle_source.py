"""Runtimes find and open their bundle through the bundle contract: the champion of the configured store,
every file verified before anything is loaded, and a bundle that fails verification ends the runtime with
one line naming the file."""

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import bundle
from bundle import champion, workloads
from bundle.schema import ImageSchema
from inference import bundle_source
from inference.sklearn_predictor.model import SklearnPredictor
from inference.sklearn_predictor.settings import SklearnPredictorSettings
from inference.transformer.heart_disease import HeartDiseaseCodec
from inference.transformer.model import make_codec
from inference.transformer.pneumonia import PneumoniaCodec
from inference.transformer.settings import TransformerSettings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def no_store_env(monkeypatch):
    for name in ("CLINOPS_BUNDLE_STORE", "CLINOPS_HOME", "CLINOPS_SKLEARN_BUNDLE", "CLINOPS_SKLEARN_WORKLOAD"):
        monkeypatch.delenv(name, raising=False)


def promote(store: Path, folder: Path, workload: str = "heart-disease") -> str:
    uri = str(shutil.copytree(folder, store / workload / "1"))
    champion.write(str(store), champion.ChampionPointer(workload, workload, "1", uri))
    return uri


def truncated_copy(folder: Path, target: Path, name: str) -> Path:
    copy = shutil.copytree(folder, target)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[: len(data) // 2])
    return copy


def test_the_champion_comes_from_the_store_in_the_environment(no_store_env, monkeypatch, tmp_path, heart_bundle):
    uri = promote(tmp_path / "store", heart_bundle)
    monkeypatch.setenv("CLINOPS_BUNDLE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CLINOPS_HOME", str(tmp_path / "elsewhere"))
    settings = SklearnPredictorSettings()
    assert settings.bundle_store == str(tmp_path / "store")
    assert bundle_source.open_served(settings, "sklearn").folder == Path(uri)


def test_the_store_defaults_to_home_bundles(no_store_env, monkeypatch, tmp_path, heart_bundle):
    uri = promote(tmp_path / "home" / "bundles", heart_bundle)
    monkeypatch.setenv("CLINOPS_HOME", str(tmp_path / "home"))
    settings = SklearnPredictorSettings()
    assert settings.bundle_store == str(tmp_path / "home" / "bundles")
    assert bundle_source.open_served(settings).manifest.workload == "heart-disease"
    assert bundle_source.open_served(settings).folder == Path(uri)
    assert SklearnPredictorSettings(bundle_store="/s").bundle_store == "/s"  # flags and code use the field name
    with pytest.raises(FileNotFoundError, match="no champion promoted for pneumonia"):
        bundle_source.open_served(SklearnPredictorSettings(workload="pneumonia"))


def test_the_workload_is_one_of_the_catalogs(no_store_env):
    for name in workloads.NAMES:
        assert TransformerSettings(workload=name).workload == name
        assert SklearnPredictorSettings(workload=name).workload == name
    with pytest.raises(ValidationError, match="unknown workload 'heart'; known: heart-disease, pneumonia"):
        TransformerSettings(workload="heart")


def test_a_truncated_model_is_refused_before_it_is_unpickled(tmp_path, heart_bundle, monkeypatch):
    import joblib

    folder = truncated_copy(heart_bundle, tmp_path / "bad", "model.joblib")
    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("joblib.load ran on an unverified bundle"))
    with pytest.raises(bundle.IntegrityError, match=r"model\.joblib: \d+ bytes; the manifest recorded") as err:
        SklearnPredictor(SklearnPredictorSettings(bundle=str(folder))).load()
    assert err.value.file == "model.joblib"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_predictor_given_a_truncated_model_exits_with_one_line_naming_it(tmp_path, heart_bundle):
    folder = truncated_copy(heart_bundle, tmp_path / "bad", "model.joblib")
    done = subprocess.run([sys.executable, "-m", "inference.sklearn_predictor", "--bundle", str(folder),
                           "--http_port", str(free_port()), "--grpc_port", str(free_port())],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output and "EOFError" not in output, output
    (line,) = [line for line in output.splitlines() if "model.joblib" in line]
    assert line.startswith("clinops heart-disease: cannot serve: serving bundle ")
    assert "the manifest recorded" in line


def test_the_codec_follows_the_workloads_kind(heart_schema, pneumonia_bundle):
    image_schema = bundle.open_bundle(pneumonia_bundle).schema
    assert isinstance(image_schema, ImageSchema)
    assert isinstance(make_codec("heart-disease", heart_schema, TransformerSettings()), HeartDiseaseCodec)
    assert isinstance(make_codec("pneumonia", image_schema, TransformerSettings(workload="pneumonia")), PneumoniaCodec)
    with pytest.raises(ValueError, match="pneumonia is of kind image, but its bundle holds a tabular schema"):
        make_codec("pneumonia", heart_schema, TransformerSettings(workload="pneumonia"))
