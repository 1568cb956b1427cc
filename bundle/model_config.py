"""``model_config.json`` (PyTorch bundles): what the TorchScript module is and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bundle import _fields as f
from bundle.layout import MODEL_CONFIG

OUTPUTS = ("logits", "embedding")


@dataclass(frozen=True)
class TorchModelConfig:
    """``model.pt``: float32 ``[N, C, H, W]`` normalised → ``(logits [N, num_classes], embedding [N, D])``."""

    variant: str
    classes: tuple[str, ...]
    embedding_dim: int
    outputs: tuple[str, ...] = OUTPUTS

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        return {"variant": self.variant, "classes": list(self.classes), "num_classes": self.num_classes,
                "embedding_dim": self.embedding_dim, "outputs": list(self.outputs)}

    @classmethod
    def from_dict(cls, data: dict) -> TorchModelConfig:
        classes = f.strings(data, "classes", min_len=2)
        if "num_classes" in data and f.integer(data, "num_classes") != len(classes):
            raise f.FieldError(f"num_classes: {data['num_classes']} but {len(classes)} classes are named")
        outputs = f.strings(data, "outputs", default=list(OUTPUTS))
        if tuple(outputs) != OUTPUTS:
            raise f.FieldError(f"outputs: {list(outputs)}; the serving module returns {list(OUTPUTS)}")
        return cls(f.text(data, "variant"), classes, f.integer(data, "embedding_dim", low=1), outputs)

    def write(self, folder: Path) -> Path:
        from bundle.writer import write_json

        return write_json(folder, MODEL_CONFIG, self.to_dict())

    @classmethod
    def read(cls, folder: Path) -> TorchModelConfig:
        return f.read_typed(folder, MODEL_CONFIG, cls.from_dict)
