"""Class names and their order: index 1 is the positive class (P(pneumonia) = softmax(logits)[:, 1])."""

CLASSES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
POSITIVE = "PNEUMONIA"
WORKLOAD = "pneumonia"
MODEL_NAME = "pneumonia"
