"""Copy folders to and from the artifact store: a local folder or S3/MinIO (``s3://bucket/prefix``).

Credentials come from the environment through :mod:`components.common.settings`, never from code.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

from components.common.settings import Settings, get_settings


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "minio://"))


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def minio_client(settings: Settings | None = None):
    """A ``minio.Minio`` client for the configured endpoint."""
    from minio import Minio

    settings = settings or get_settings()
    if not settings.s3_endpoint:
        raise ValueError("an s3:// store needs CLINOPS_S3_ENDPOINT (or AWS_ENDPOINT_URL) set to http(s)://host:port")
    endpoint = urlparse(settings.s3_endpoint)
    return Minio(
        endpoint.netloc,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=endpoint.scheme == "https",
        region=settings.s3_region,
    )


def upload_dir(local_dir: Path, dest_uri: str, settings: Settings | None = None) -> str:
    """Copy every file under ``local_dir`` to ``dest_uri``; returns ``dest_uri``."""
    local_dir = Path(local_dir)
    if not is_s3(dest_uri):
        dest = Path(dest_uri)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(local_dir, dest)
        return str(dest)
    client = minio_client(settings)
    bucket, prefix = _split(dest_uri)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        key = join(prefix, path.relative_to(local_dir).as_posix()) if prefix else path.relative_to(local_dir).as_posix()
        client.fput_object(bucket, key, str(path))
    return dest_uri


def download_dir(src_uri: str, local_dir: Path, settings: Settings | None = None) -> Path:
    """Copy the folder at ``src_uri`` to ``local_dir`` (a no-op copy for local folders)."""
    local_dir = Path(local_dir)
    if not is_s3(src_uri):
        if Path(src_uri).resolve() != local_dir.resolve():
            shutil.copytree(src_uri, local_dir, dirs_exist_ok=True)
        return local_dir
    client = minio_client(settings)
    bucket, prefix = _split(src_uri)
    prefix = prefix.rstrip("/") + "/"
    found = False
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        found = True
        target = local_dir / obj.object_name[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.fget_object(bucket, obj.object_name, str(target))
    if not found:
        raise FileNotFoundError(f"nothing stored under {src_uri}")
    return local_dir


def write_text(dest_uri: str, text: str, settings: Settings | None = None) -> None:
    """Write one small text object (pointers such as ``champion.json``)."""
    if not is_s3(dest_uri):
        Path(dest_uri).parent.mkdir(parents=True, exist_ok=True)
        Path(dest_uri).write_text(text)
        return
    import io

    client = minio_client(settings)
    bucket, key = _split(dest_uri)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    data = text.encode()
    client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="application/json")


def read_text(src_uri: str, settings: Settings | None = None) -> str:
    if not is_s3(src_uri):
        return Path(src_uri).read_text()
    client = minio_client(settings)
    bucket, key = _split(src_uri)
    response = client.get_object(bucket, key)
    try:
        return response.read().decode()
    finally:
        response.close()
        response.release_conn()
