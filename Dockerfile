# The project's images, built from the repository root:
#   clinops    (the default target) every KFP component's base_image: the whole main environment and the
#              project in place (the RayJob template under manifests/ is read from the source tree)
#   train-gpu  the RayJob's head and worker pods: only what Ray Train needs (requirements/training.txt),
#              wget for KubeRay's health probes. PyTorch's CUDA build brings its CUDA libraries as wheels;
#              the node's NVIDIA driver and container toolkit provide the rest.
#   docker build -t docker.io/clinops/clinops:0.1.0 .
#   docker build --target train-gpu -t docker.io/clinops/clinops-train-gpu:0.1.0 .
# `make images IMAGE_REGISTRY=... IMAGE_TAG=...` builds these and the serving images (inference/Dockerfile).
# Each environment is built in a virtualenv of its own stage and copied into a fresh base: pip's build
# leftovers and the source of wheels never reach the image that runs.
FROM python:3.11.7-slim-bookworm AS python
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
# KubeRay starts Ray through a login shell (bash -lc), whose /etc/profile resets PATH: put the venv back
RUN echo "export PATH=/opt/venv/bin:\$PATH" > /etc/profile.d/venv.sh
WORKDIR /opt/clinops

FROM python AS clinops-env
COPY requirements/ requirements/
RUN python -m venv /opt/venv && pip install -c requirements/constraints.txt -r requirements/main.txt
COPY setup.cfg pyproject.toml README.md ./
COPY bundle/ bundle/
COPY components/ components/
COPY pipelines/ pipelines/
COPY inference/ inference/
COPY manifests/ manifests/
RUN pip install --no-deps -e .

FROM python AS train-env
COPY requirements/ requirements/
RUN python -m venv /opt/venv && pip install -c requirements/constraints.txt -r requirements/training.txt
COPY setup.cfg pyproject.toml README.md ./
COPY bundle/ bundle/
COPY components/ components/
RUN pip install --no-deps -e .

FROM python AS train-gpu
# KubeRay's head and worker probes run wget against the Ray agent
RUN apt-get update && apt-get install -y --no-install-recommends wget=1.21.3-1+deb12u1 \
    && rm -rf /var/lib/apt/lists/* && useradd --uid 1000 --create-home ray
COPY --from=train-env /opt/venv /opt/venv
COPY --from=train-env /opt/clinops /opt/clinops
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility CLINOPS_HOME=/tmp/clinops
USER 1000
ENTRYPOINT ["python", "-m", "components.pneumonia.entrypoint"]

FROM python AS clinops
# where `make images` pushes the images: the deploy step names the serving images by them when it creates an
# InferenceService (components/deploy/bootstrap.py, through the settings' image_registry and image_tag)
ARG IMAGE_REGISTRY=docker.io/clinops
ARG IMAGE_TAG=0.1.0
ENV CLINOPS_HOME=/var/lib/clinops CLINOPS_IMAGE_REGISTRY=${IMAGE_REGISTRY} CLINOPS_IMAGE_TAG=${IMAGE_TAG}
COPY --from=clinops-env /opt/venv /opt/venv
COPY --from=clinops-env /opt/clinops /opt/clinops
RUN useradd --uid 1000 --create-home clinops && mkdir -p /var/lib/clinops && chown clinops /var/lib/clinops
USER 1000
ENTRYPOINT ["clinops"]
CMD ["--help"]
