"""The bundle contract: what it writes is what it reads back, and a damaged or malformed bundle is
refused with the file (and field) named, before anything is loaded."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bundle
from bundle import BundleWriter, champion, layout, storage, workloads
from bundle.drift import KSDriftSettings, TabularDriftSettings, Window
from bundle.schema import CategoricalFeature, ImagePreprocessing, ImageSchema, NumericFeature, TabularSchema

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]

SCHEMA = TabularSchema("heart-disease", (
    NumericFeature("age", 1, 120, "years", nullable=False),
    CategoricalFeature("sex", {0: "female", 1: "male"}, {"f": 0, "m": 1}, nullable=False),
    NumericFeature("chol", 70, 700, "mg/dl", nullable=True)), classes=("no disease", "disease"),
    positive_class="disease", threshold=0.4)


def tabular_bundle(folder: Path, model: bytes = b"model bytes " * 100) -> Path:
    writer = BundleWriter(folder, "heart-disease", layout.SKLEARN, "heart-disease", "3")
    writer.model_path.write_bytes(model)
    writer.write_schema(SCHEMA)
    writer.drift_reference_path.write_bytes(b"npz stand-in")
    writer.write_drift(TabularDriftSettings(("age", "sex", "chol"), ("sex",), window=Window(50, 30.0, 10)))
    writer.finish(metrics={"roc_auc": 0.91}, mlflow_run_id="abc", promoted=True)
    return folder


def image_bundle(folder: Path) -> Path:
    writer = BundleWriter(folder, "pneumonia", layout.PYTORCH, "pneumonia", "2")
    writer.model_path.write_bytes(b"torchscript stand-in")
    writer.write_model_config(bundle.TorchModelConfig("efficientnet_b0", ("NORMAL", "PNEUMONIA"), 1280))
    writer.write_schema(ImageSchema("pneumonia", ImagePreprocessing(224, 224, 1, (0.5,), (0.25,)), threshold=0.3))
    writer.drift_reference_path.write_bytes(b"npz stand-in")
    writer.write_drift(KSDriftSettings("embedding", 1280))
    writer.finish()
    return folder


def test_the_contract_loads_no_heavy_library_in_a_fresh_interpreter():
    code = ("import sys, bundle, bundle.storage, bundle.reader, bundle.writer; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=ROOT).stdout.split())
    assert "bundle" in loaded
    assert not loaded & {"pydantic", "numpy", "kserve", "torch", "sklearn", "mlflow", "minio", "pandas",
                         "components", "inference", "pipelines"}


def test_a_bundle_opens_in_an_interpreter_without_any_installed_package(tmp_path):
    """The drift sidecar's environment (pydantic 1, old numpy, no kserve) shares nothing with training's but
    the standard library: with site-packages switched off, the contract still verifies and reads a bundle."""
    folder = tabular_bundle(tmp_path / "b")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import bundle; "
            "b = bundle.open_bundle(sys.argv[2], 'heart-disease'); "
            "print(b.manifest.model_version, ','.join(b.schema.feature_order), b.drift.detector)")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(ROOT), str(folder)], capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["3", "age,sex,chol", "TabularDrift"]


def test_the_contract_imports_only_the_standard_library_and_itself():
    allowed_lazy = {"minio"}  # inside S3Config.client only, for s3:// stores
    for path in sorted((ROOT / "bundle").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                assert top == "bundle" or top in sys.stdlib_module_names or (
                    top in allowed_lazy and node.col_offset > 0), f"{path.name} imports {name}"


def test_what_the_writer_writes_the_reader_reads(tmp_path):
    opened = bundle.open_bundle(tabular_bundle(tmp_path / "b"), "heart-disease", layout.SKLEARN)
    assert opened.schema == SCHEMA
    assert opened.schema.feature("sex").labels["m"] == 1 and opened.schema.feature("sex").labels["male"] == 1
    assert opened.drift.window == Window(50, 30.0, 10) and opened.drift.categorical == ("sex",)
    assert opened.manifest.metrics == {"roc_auc": 0.91} and opened.manifest.promoted is True
    assert set(opened.manifest.files) == {"model.joblib", "schema.json", "drift/reference.npz", "drift/settings.json"}
    assert opened.manifest.files["model.joblib"].size == 1200
    assert opened.model_path == tmp_path / "b" / "model.joblib" and opened.model_config is None

    image = bundle.open_bundle(image_bundle(tmp_path / "i"))
    assert image.model_config.num_classes == 2 and image.model_config.embedding_dim == 1280
    assert image.schema.image.height == 224 and image.drift.detector == "KSDrift"


def test_a_truncated_model_is_refused_naming_the_file(tmp_path):
    folder = tabular_bundle(tmp_path / "b")
    data = (folder / "model.joblib").read_bytes()
    (folder / "model.joblib").write_bytes(data[:100])
    with pytest.raises(bundle.IntegrityError, match=r"model\.joblib: 100 bytes; the manifest recorded 1200") as err:
        bundle.open_bundle(folder)
    assert err.value.file == "model.joblib"


def test_a_changed_file_of_the_same_size_is_refused(tmp_path):
    folder = tabular_bundle(tmp_path / "b")
    (folder / "drift" / "reference.npz").write_bytes(b"npz stand-In")
    with pytest.raises(bundle.IntegrityError, match=r"drift/reference\.npz: sha256 differs"):
        bundle.open_bundle(folder)


def test_a_missing_schema_is_named(tmp_path):
    folder = tabular_bundle(tmp_path / "b")
    (folder / "schema.json").unlink()
    with pytest.raises(bundle.MissingFile, match=r"schema\.json: listed in the manifest but missing"):
        bundle.open_bundle(folder)


def test_the_writer_refuses_an_incomplete_bundle(tmp_path):
    writer = BundleWriter(tmp_path / "b", "heart-disease", layout.SKLEARN, "heart-disease", "1")
    writer.model_path.write_bytes(b"x")
    with pytest.raises(bundle.MissingFile, match="schema.json: not written"):
        writer.finish()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s["features"]["age"].update(min="one"), "features.age.min: a finite number is needed"),
    (lambda s: s["features"]["sex"].update(kind="ordinal"), "features.sex.kind: 'ordinal' is not one of"),
    (lambda s: s["features"]["sex"]["labels"].update(x=7), "features.sex.labels.x: maps to 7, which is not a code"),
    (lambda s: s.update(threshold=1.5), r"threshold: 1.5 is outside \[0, 1\]"),
    (lambda s: s.pop("feature_order"), "feature_order: missing"),
    (lambda s: s.update(kind="audio"), "kind: 'audio' is not one of"),
])
def test_a_malformed_schema_names_the_field(tmp_path, edit, message):
    folder = tabular_bundle(tmp_path / "b")
    data = json.loads((folder / "schema.json").read_text())
    edit(data)
    (folder / "schema.json").write_text(json.dumps(data))
    manifest = bundle.Manifest.read(folder)
    manifest.record_files(folder)  # a consistent manifest: the schema itself is what is wrong
    manifest.write(folder)
    with pytest.raises(bundle.MalformedFile, match=message) as err:
        bundle.open_bundle(folder)
    assert err.value.file == "schema.json"


def test_drift_settings_have_one_shape_per_detector(tmp_path):
    assert bundle.drift.parse(KSDriftSettings("softmax", 2).to_dict()) == KSDriftSettings("softmax", 2)
    with pytest.raises(ValueError, match="detector: 'MMDDrift' is not one of 'TabularDrift', 'KSDrift'"):
        bundle.drift.parse({"detector": "MMDDrift"})
    settings = TabularDriftSettings(("a", "b"), ("b",)).to_dict() | {"categorical": ["c"]}
    with pytest.raises(ValueError, match="categorical: 'c' is not among feature_names"):
        bundle.drift.parse(settings)


def test_an_old_or_foreign_manifest_is_refused(tmp_path):
    folder = tabular_bundle(tmp_path / "b")
    data = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps(data | {"format_version": 1}))
    with pytest.raises(bundle.MalformedFile, match="bundle format 1; this reader needs 2"):
        bundle.open_bundle(folder)
    (folder / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(bundle.MalformedFile, match="a heart-disease bundle, not pneumonia"):
        bundle.open_bundle(folder, workload="pneumonia")
    del data["files"]["schema.json"]
    (folder / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(bundle.MalformedFile, match="does not list schema.json"):
        bundle.open_bundle(folder)


def test_champion_pointer_and_local_store(tmp_path):
    store = str(tmp_path / "store")
    assert champion.read(store, "heart-disease") is None
    uri = storage.upload_dir(tabular_bundle(tmp_path / "b"), champion.bundle_uri(store, "heart-disease", "3"))
    assert bundle.open_bundle(Path(uri)).manifest.model_version == "3"
    champion.write(store, champion.ChampionPointer("heart-disease", "heart-disease", "3", uri))
    assert champion.read(store, "heart-disease").bundle_uri == uri
    assert bundle.locate(None, "heart-disease", store) == Path(uri)
    with pytest.raises(FileNotFoundError, match="no champion promoted for pneumonia"):
        bundle.locate(None, "pneumonia", store)
    (Path(store) / "heart-disease" / "champion.json").write_text("{")
    with pytest.raises(bundle.MalformedFile, match="champion pointer"):
        champion.read(store, "heart-disease")


def test_s3_settings_come_from_explicit_values_or_the_usual_variables():
    config = storage.S3Config.from_environ({"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_ACCESS_KEY_ID": "k",
                                            "AWS_SECRET_ACCESS_KEY": "s"})
    assert config == storage.S3Config("http://minio:9000", "k", "s", None)
    with pytest.raises(ValueError, match="needs an endpoint"):
        storage.S3Config().client()


def test_the_workload_catalog():
    assert workloads.NAMES == ("heart-disease", "pneumonia")
    assert workloads.get("pneumonia").framework == layout.PYTORCH
    with pytest.raises(KeyError, match="unknown workload 'x'; known: heart-disease, pneumonia"):
        workloads.get("x")
