"""Data code: phantom generator, loaders for both formats, odd and corrupt images, validation, split."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from components.pneumonia import loaders, phantom, preprocess, split, validation
from components.pneumonia.labels import CLASSES

pytestmark = pytest.mark.unit


def _digest(folder):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*.jpeg")))).hexdigest()


def test_phantom_is_seeded_and_in_kaggle_layout(tmp_path):
    spec = phantom.PhantomSpec(counts={"train": 10, "val": 4, "test": 6}, size=32, seed=7)
    counts = phantom.generate(tmp_path / "a", spec)
    phantom.generate(tmp_path / "b", spec)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert counts["train"] == {"NORMAL": 5, "PNEUMONIA": 5}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["test", "train", "val"]
    phantom.generate(tmp_path / "c", phantom.PhantomSpec(counts={"train": 10}, size=32, seed=8))
    assert _digest(tmp_path / "c") != _digest(tmp_path / "a")


def test_phantom_opacities_brighten_the_lung_fields():
    rng = np.random.default_rng(0)
    normal = np.mean([phantom.render(rng, 64, 64, False)[16:48, 8:56].mean() for _ in range(20)])
    sick = np.mean([phantom.render(rng, 64, 64, True)[16:48, 8:56].mean() for _ in range(20)])
    assert sick > normal + 0.01


def test_phantom_imbalanced_counts(tmp_path):
    counts = phantom.generate(tmp_path, phantom.PhantomSpec(counts={"train": 20}, size=24, pneumonia_fraction=0.75))
    assert counts["train"] == {"NORMAL": 5, "PNEUMONIA": 15}


def test_kaggle_scan_finds_nested_root_and_ignores_noise(kaggle_dir):
    base = kaggle_dir / "chest_xray"
    (kaggle_dir / "__MACOSX" / "train" / "NORMAL").mkdir(parents=True)
    (kaggle_dir / "__MACOSX" / "train" / "NORMAL" / "._x.jpeg").write_bytes(b"junk")
    (base / "train" / "NORMAL" / ".DS_Store").write_bytes(b"junk")
    (base / "train" / "NORMAL" / "notes.txt").write_text("not an image")
    inventory = loaders.scan(kaggle_dir)
    assert inventory.format == "kaggle" and inventory.root == str(base)
    assert len(inventory.records) == 44
    assert {r.split for r in inventory.records} == {"train", "val", "test"}
    assert len(inventory.ignored) == 2
    labels = {r.label for r in inventory.records if "/PNEUMONIA/" in r.source}
    assert labels == {CLASSES.index("PNEUMONIA")}


@pytest.mark.parametrize("size,rgb", [(28, False), (64, True), (128, False)])
def test_medmnist_npz_any_size(tmp_path, size, rgb, write_medmnist):
    path = write_medmnist(tmp_path / f"pneumoniamnist_{size}.npz", size, rgb)
    inventory = loaders.scan(tmp_path)
    assert inventory.format == "medmnist" and len(inventory.records) == 30
    record = inventory.records[3]
    image = loaders.open_image(record)
    assert image.size == (size, size) and image.mode == ("RGB" if rgb else "L")
    assert record.label == 1
    assert preprocess.to_uint8(image, 32, 32, 1).shape == (32, 32, 1)
    assert loaders.scan(path).format == "medmnist"


def test_medmnist_rejects_foreign_npz_and_labels(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="no"):
        loaders.scan(tmp_path / "other.npz")
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((2, 8, 8), np.uint8), train_labels=np.array([[0], [5]]))
    with pytest.raises(ValueError, match="outside"):
        loaders.scan(tmp_path / "bad.npz")


def _record(path):
    return loaders.ImageRecord("train", 0, str(path))


def test_corrupt_and_odd_images(tmp_path):
    truncated = tmp_path / "truncated.jpeg"
    Image.fromarray(np.full((40, 50), 128, np.uint8)).save(truncated, format="JPEG")
    truncated.write_bytes(truncated.read_bytes()[:60])
    garbage = tmp_path / "garbage.jpeg"
    garbage.write_bytes(b"definitely not a jpeg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path in (truncated, garbage, empty):
        with pytest.raises(loaders.CorruptImage, match=path.name):
            loaders.open_image(_record(path))

    wide16 = tmp_path / "sixteen.png"
    Image.fromarray(np.linspace(0, 65535, 30 * 70).reshape(30, 70).astype(np.uint16)).save(wide16)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (90, 20), (200, 10, 10, 128)).save(rgba)
    for path in (wide16, rgba):
        image = loaders.open_image(_record(path))
        gray = preprocess.to_uint8(image, 24, 24, 1)
        rgb = preprocess.to_uint8(image, 24, 24, 3)
        assert gray.shape == (24, 24, 1) and rgb.shape == (24, 24, 3)
        assert gray.dtype == np.uint8
    assert preprocess.to_uint8(loaders.open_image(_record(wide16)), 24, 24, 1).max() > 200  # rescaled, not clipped


def test_resize_policy_matches_pil_and_normalise():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 60, 3), dtype=np.uint8))
    array = preprocess.to_uint8(image, 32, 40, 1)
    expected = np.asarray(image.convert("L").resize((40, 32), Image.BILINEAR))
    np.testing.assert_array_equal(array[..., 0], expected)
    contract = preprocess.ImageContract(32, 40, 1, (0.5,), (0.25,))
    x = preprocess.normalise(array[None], contract)
    assert x.shape == (1, 1, 32, 40) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], (expected / 255.0 - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(ValueError):
        preprocess.ImageContract(8, 8, 2, (0.5, 0.5), (1, 1))


def test_validation_counts_corrupt_files_without_failing(kaggle_dir):
    base = kaggle_dir / "chest_xray"
    (base / "train" / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8\xff garbage")
    report = validation.validate(str(kaggle_dir), validation.ValidationPolicy(max_corrupt_fraction=0.1))
    assert report.ok, report.summary()
    finding = next(f for f in report.findings if f.check == "undecodable")
    assert finding.severity == "warning" and finding.count == 1
    assert report.stats["images_found"] == 45 and report.stats["decodable"] == 44
    assert report.stats["train_images"] == 24 and "50% PNEUMONIA" in report.stats["train_balance"]
    assert "min" in report.stats["width"] and "L" in report.stats["modes"]
    assert "undecodable" in report.to_markdown() and "<table>" in report.to_html()
    strict = validation.validate(str(kaggle_dir), validation.ValidationPolicy(max_corrupt_fraction=0.01))
    assert not strict.ok and strict.errors[0].check == "undecodable"


def test_validation_flags_leakage_and_empty_class(kaggle_dir):
    base = kaggle_dir / "chest_xray"
    leaked = sorted((base / "test" / "PNEUMONIA").iterdir())[0]
    shutil.copy(leaked, base / "train" / "PNEUMONIA" / "copy-of-test.jpeg")
    report = validation.validate(str(kaggle_dir))
    assert [f.check for f in report.errors] == ["leakage"] and report.errors[0].count == 1
    allowed = validation.validate(str(kaggle_dir), validation.ValidationPolicy(allow_cross_split_duplicates=True))
    assert allowed.ok
    shutil.rmtree(base / "test" / "NORMAL")
    empty = validation.validate(str(kaggle_dir), validation.ValidationPolicy(allow_cross_split_duplicates=True))
    assert any(f.check == "class_balance" and "test has 0 NORMAL" in f.message for f in empty.errors)
    assert not validation.validate(str(kaggle_dir / "nowhere")).ok


def test_split_drops_leaks_carves_val_and_writes_contract(kaggle_dir, tmp_path):
    base = kaggle_dir / "chest_xray"
    leaked = sorted((base / "test" / "NORMAL").iterdir())[0]
    shutil.copy(leaked, base / "train" / "NORMAL" / "copy-of-test.jpeg")
    (base / "val" / "NORMAL" / "broken.jpeg").write_bytes(b"nope")
    cfg = split.SplitConfig(height=32, width=32, channels=1, val_fraction=0.25, min_val=12, seed=0)
    arrays, summary = split.build_splits(str(kaggle_dir), cfg)
    assert summary["dropped_leaked"]["train"] == 1 and summary["skipped_corrupt"] == 1
    assert summary["val_carved_from_train"] is True  # 8 val images < min_val 12: merged and re-carved
    assert len(arrays["train"]) + len(arrays["val"]) == 24 + 8
    assert len(arrays["test"]) == 12 and set(arrays["val"].y) == {0, 1}
    assert arrays["train"].x.shape[1:] == (32, 32, 1) and arrays["train"].x.dtype == np.uint8
    out = split.save(arrays, summary, tmp_path / "splits")
    contract = split.load_contract(out)
    assert contract.height == 32 and contract.channels == 1 and 0 < contract.mean[0] < 1
    np.testing.assert_array_equal(split.load(out, "test").y, arrays["test"].y)
    rgb, _ = split.build_splits(str(kaggle_dir), split.SplitConfig(16, 20, 3, min_val=4))
    assert rgb["train"].x.shape[1:] == (16, 20, 3)


def test_ingest_materialises_each_source(tmp_path, kaggle_dir, write_medmnist):
    from components.pneumonia import ingest

    found = ingest.materialise(str(kaggle_dir), tmp_path / "from-kaggle")
    assert found == {"source": str(kaggle_dir), "format": "kaggle", "images": 44, "ignored": 0}
    assert (tmp_path / "from-kaggle" / "train" / "PNEUMONIA").is_dir()
    npz = write_medmnist(tmp_path / "pneumoniamnist.npz", 28)
    assert ingest.materialise(str(npz), tmp_path / "from-npz")["format"] == "medmnist"
    spec = phantom.PhantomSpec(counts={"train": 6, "val": 2, "test": 4}, size=24)
    assert ingest.materialise("phantom", tmp_path / "phantom", spec)["images"] == 12
    with pytest.raises(FileNotFoundError):
        ingest.materialise(str(tmp_path / "missing"), tmp_path / "x")
