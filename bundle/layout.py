"""Where everything lives in a bundle ``<store>/<workload>/<version>/`` and beside it.

::

    bundle.json          the manifest: workload, model, framework, sha256 + size of every other file
    model.joblib         scikit-learn: the whole preprocessing + estimator Pipeline (KServe sklearn layout)
    model.pt             PyTorch: TorchScript module, with model_config.json beside it
    model_config.json    PyTorch only: variant, classes, embedding size, outputs
    schema.json          the typed input schema the transformer validates against
    drift/reference.npz  drift reference sample (arrays named by drift/settings.json)
    drift/settings.json  detector settings, one typed shape per detector kind
    calibration.json     optional: the map from the model's probability to the served one, and the
                         operating point (target sensitivity → threshold)

and ``<store>/<workload>/champion.json``, the champion pointer.
"""

from __future__ import annotations

FORMAT_VERSION = 2  # 2: the manifest records sha256 and size of every file

MANIFEST = "bundle.json"
SCHEMA = "schema.json"
MODEL_CONFIG = "model_config.json"
DRIFT_DIR = "drift"
DRIFT_REFERENCE = f"{DRIFT_DIR}/reference.npz"
DRIFT_SETTINGS = f"{DRIFT_DIR}/settings.json"
CHAMPION_POINTER = "champion.json"
CALIBRATION = "calibration.json"  # optional: listed in the manifest when written

SKLEARN = "sklearn"
PYTORCH = "pytorch"
FRAMEWORKS = (SKLEARN, PYTORCH)
MODEL_FILE = {SKLEARN: "model.joblib", PYTORCH: "model.pt"}


def required_files(framework: str) -> tuple[str, ...]:
    """Every file a complete bundle of ``framework`` holds besides the manifest."""
    extra = (MODEL_CONFIG,) if framework == PYTORCH else ()
    return (MODEL_FILE[framework], SCHEMA, *extra, DRIFT_REFERENCE, DRIFT_SETTINGS)
