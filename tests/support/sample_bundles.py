"""Small but complete serving bundles, built in seconds, for tests and benchmarks: written through the
bundle contract's writer exactly as training writes them (manifest with hashes, typed schema, drift
settings), only with tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bundle import BundleWriter, TorchModelConfig, layout
from bundle.drift import KSDriftSettings, ScoreDrift, TabularDriftSettings, Window
from bundle.schema import CATEGORICAL, ImagePreprocessing, ImageSchema, TabularSchema


def heart_rows(schema: TabularSchema, n: int, seed: int = 0) -> np.ndarray:
    """Plausible rows in ``feature_order`` with UCI codes; a few NaN in nullable features."""
    rng = np.random.default_rng(seed)
    columns = []
    for feature in schema.features:
        if feature.kind == CATEGORICAL:
            column = rng.choice(np.array([float(c) for c in feature.codes]), size=n)
        else:
            low, high = feature.min, feature.max
            mid, spread = (low + high) / 2, (high - low) / 6
            column = np.clip(rng.normal(mid, spread, size=n), low, high).round(1)
        if feature.nullable:
            column[rng.random(n) < 0.05] = np.nan
        columns.append(column)
    return np.stack(columns, axis=1)


def write_heart_disease(folder: Path, schema: TabularSchema, estimator: str = "logreg", n_rows: int = 400,
                        seed: int = 0, window: int = 50) -> Path:
    """A heart-disease bundle: sklearn Pipeline(imputer, scaler, estimator) on synthetic rows; with
    ``estimator="champion-shaped"`` the pipeline training builds (logistic regression)."""
    import joblib
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    writer = BundleWriter(folder, "heart-disease", layout.SKLEARN, "heart-disease-sample", "1")
    held_out = 200  # rows the model does not train on: the drift reference, scored as new patients are
    x_all = heart_rows(schema, n_rows + held_out, seed)
    x, x_ref = x_all[:n_rows], x_all[n_rows:]
    order = list(schema.feature_order)
    score = np.nan_to_num(x[:, order.index("age")] - 55) / 10 + np.nan_to_num(x[:, order.index("cp")] - 2.5)
    y = (score + np.random.default_rng(seed + 1).normal(0, 0.7, n_rows) > 0).astype(int)
    if estimator == "champion-shaped":  # what training registers: per-kind imputation, indicators, one-hot
        from components.heart_disease import model as training_model

        pipeline = training_model.build("logistic_regression", {"C": 0.5}).fit(x, y)
    else:
        model = (GradientBoostingClassifier(n_estimators=100, random_state=seed) if estimator == "gbm"
                 else LogisticRegression(max_iter=500))
        pipeline = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
                             ("model", model)]).fit(x, y)
    joblib.dump(pipeline, writer.model_path)
    writer.write_schema(schema)
    np.savez(writer.drift_reference_path, x=x_ref, score=pipeline.predict_proba(x_ref)[:, 1:])
    writer.write_drift(TabularDriftSettings(tuple(order), tuple(f.name for f in schema.features
                                                                if f.kind == CATEGORICAL),
                                            p_val=0.02, correction="fdr", window=Window(size=window),
                                            score=ScoreDrift("predict_proba", 1, p_val=0.03)))
    writer.finish()
    return Path(folder)


def pneumonia_schema(height: int = 32, width: int = 32, channels: int = 1, threshold: float = 0.5) -> ImageSchema:
    return ImageSchema("pneumonia", ImagePreprocessing(height, width, channels, (0.5,) * channels, (0.25,) * channels),
                       threshold=threshold, max_pixels=4096 * 4096)


def tiny_image_net(channels: int, embedding_dim: int = 16, width: int = 8):
    """A small CNN whose forward returns ``(logits [N,2], embedding [N,D])`` like the real bundles."""
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, width * 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.embed = nn.Linear(width * 2, embedding_dim)
            self.head = nn.Linear(embedding_dim, 2)

        def forward(self, x):
            embedding = torch.relu(self.embed(self.features(x)))
            return self.head(embedding), embedding

    torch.manual_seed(0)
    return TinyNet().eval()


def write_pneumonia(folder: Path, height: int = 32, width: int = 32, channels: int = 1, module=None,
                    embedding_dim: int = 16, variant: str = "tiny-cnn") -> Path:
    """A pneumonia bundle: TorchScript ``model.pt`` + ``model_config.json`` + ``schema.json``."""
    import torch

    writer = BundleWriter(folder, "pneumonia", layout.PYTORCH, "pneumonia-sample", "1")
    module = module if module is not None else tiny_image_net(channels, embedding_dim)
    scripted = torch.jit.trace(module.eval(), torch.zeros(1, channels, height, width))
    scripted.save(str(writer.model_path))
    writer.write_model_config(TorchModelConfig(variant, ("NORMAL", "PNEUMONIA"), embedding_dim))
    writer.write_schema(pneumonia_schema(height, width, channels))
    # the reference: the module's embeddings of uniform-noise images (what the tests send as in-distribution),
    # normalised as the predictor does
    pixels = np.random.default_rng(0).integers(0, 256, size=(200, channels, height, width)).astype("float32")
    with torch.no_grad():
        _, embedding = module(torch.from_numpy((pixels / 255 - 0.5) / 0.25))
    np.savez(writer.drift_reference_path, embedding=embedding.numpy().astype("float32"))
    writer.write_drift(KSDriftSettings("embedding", embedding_dim))
    writer.finish()
    return Path(folder)


def opacity_net(channels: int = 1, embedding_dim: int = 4):
    """A net shaped as export writes EfficientNet (``features`` → ``avgpool`` → ``classifier``, forward
    ``(logits, embedding)``) whose P(PNEUMONIA) rises with bright areas: the maps are a 5×5 mean of the
    normalised image less 1, kept where positive, so only a bright blob (normalised ~ +1.6) lights them up.
    Its Grad-CAM map therefore peaks on the blob: what the heatmap tests plant."""
    import torch
    from torch import nn

    class OpacityNet(nn.Module):
        def __init__(self):
            super().__init__()
            conv = nn.Conv2d(channels, embedding_dim, 5, padding=2)
            with torch.no_grad():
                conv.weight.fill_(1.0 / (25 * channels))
                conv.bias.fill_(-1.0)
            self.features = nn.Sequential(conv, nn.ReLU())
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(embedding_dim, 2)
            with torch.no_grad():
                self.classifier.weight.copy_(torch.tensor([[-10.0], [10.0]]).repeat(1, embedding_dim))
                self.classifier.bias.copy_(torch.tensor([0.5, -0.5]))

        def forward(self, x):
            embedding = torch.flatten(self.avgpool(self.features(x)), 1)
            return self.classifier(embedding), embedding

    return OpacityNet().eval()


def opacity_image(rng: np.random.Generator, height: int, width: int, radius: int = 4) -> tuple[np.ndarray, tuple]:
    """A dark noisy uint8 image ``[H, W]`` with one bright disk, and the disk's (cx, cy, radius) in pixels."""
    cy, cx = int(rng.integers(radius + 1, height - radius - 1)), int(rng.integers(radius + 1, width - radius - 1))
    yy, xx = np.mgrid[:height, :width]
    image = rng.normal(40, 8, (height, width))
    image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = 230
    return np.clip(image, 0, 255).astype(np.uint8), (cx, cy, radius)
