"""What a pipeline task needs from the cluster: where MLflow and the artifact store are, and the
credentials for them. In Kubeflow both come from optional objects in the run's namespace
(ConfigMap ``clinops-config``, Secret ``clinops-s3`` for MinIO, Secret ``clinops-mlflow`` for an MLflow
server behind basic auth); ``kfp.local`` ignores them and uses the local environment instead."""

from __future__ import annotations

from kfp import kubernetes

CONFIG_MAP = "clinops-config"
SECRET = "clinops-s3"
CONFIG_KEYS = ["MLFLOW_TRACKING_URI", "CLINOPS_S3_ENDPOINT", "CLINOPS_BUNDLE_STORE"]
SECRET_KEYS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
MLFLOW_SECRET = "clinops-mlflow"
MLFLOW_SECRET_KEYS = ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]


def with_platform_env(*tasks):
    """Give each task the tracking/store settings and S3 credentials as environment variables."""
    for task in tasks:
        kubernetes.use_config_map_as_env(task, CONFIG_MAP, {k: k for k in CONFIG_KEYS}, optional=True)
        kubernetes.use_secret_as_env(task, SECRET, {k: k for k in SECRET_KEYS}, optional=True)
        kubernetes.use_secret_as_env(task, MLFLOW_SECRET, {k: k for k in MLFLOW_SECRET_KEYS}, optional=True)
    return tasks
