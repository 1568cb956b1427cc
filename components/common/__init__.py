"""Pieces shared by every workload: settings, MLflow registry, gate, bundle export, storage, plots."""
