# The project's image: every KFP component (base_image) and the serving runtimes run in it.
# Build: docker build -t docker.io/clinops/clinops:0.1.0 .
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 CLINOPS_HOME=/var/lib/clinops
WORKDIR /opt/clinops

COPY requirements/ requirements/
RUN pip install -c requirements/constraints.txt -r requirements/main.txt

COPY setup.cfg pyproject.toml README.md ./
COPY bundle/ bundle/
COPY components/ components/
COPY pipelines/ pipelines/
COPY inference/ inference/
# The RayJob template is read from the source tree (manifests/ is not a Python package): install in place.
COPY manifests/ manifests/
RUN pip install --no-deps -e . && useradd --uid 1000 --create-home clinops && mkdir -p /var/lib/clinops \
    && chown clinops /var/lib/clinops

USER 1000
ENTRYPOINT ["clinops"]
CMD ["--help"]
