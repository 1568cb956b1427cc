"""PyTorch predictor: serves a bundle's TorchScript ``model.pt`` with dynamic batching, GPU when present."""
