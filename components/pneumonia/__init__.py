"""The pneumonia workload: chest X-rays → EfficientNet trained with Ray Train → TorchScript bundle."""
