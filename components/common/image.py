"""The project's container images. Components name them through :func:`image_ref` with the defaults
below; ``python -m pipelines.compile --image-registry R --image-tag T`` (``make compile IMAGE_REGISTRY=
IMAGE_TAG=``) writes another registry and tag into the compiled pipelines, so no component hard-codes
where images live. The names are those ``make images`` builds."""

DEFAULT_REGISTRY = "docker.io/clinops"
DEFAULT_TAG = "0.1.0"  # the project's version (setup.cfg)

COMPONENT = "clinops"  # every lightweight component's base_image: bodies import project code, install nothing
TRAIN_GPU = "clinops-train-gpu"  # the RayJob's head and worker pods
SERVING = ("sklearn-predictor", "torch-predictor", "transformer", "drift")  # inference/Dockerfile's targets
NAMES = (COMPONENT, TRAIN_GPU, *SERVING)


def image_ref(name: str, registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> str:
    if name not in NAMES:
        raise ValueError(f"unknown image {name!r}; known: {', '.join(NAMES)}")
    return f"{registry.rstrip('/')}/{name}:{tag}"


CLINOPS_IMAGE = image_ref(COMPONENT)
TRAIN_GPU_IMAGE = image_ref(TRAIN_GPU)
