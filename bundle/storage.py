"""Copy bundles to and from a store: a local folder or S3/MinIO (``s3://bucket/prefix``).

Every function takes its S3 connection as an explicit :class:`S3Config`; nothing here reads a global
settings object, so training, the serving images and the drift sidecar use it alike. The ``minio``
client is imported only when an ``s3://`` URI is used.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True)
class S3Config:
    endpoint: str | None = None  # http(s)://host:port
    access_key: str | None = None
    secret_key: str | None = None
    region: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> S3Config:
        """The usual variable names (those KServe's storage initializer and the AWS tools read)."""
        def first(*names):
            return next((environ[n] for n in names if environ.get(n)), None)

        return cls(first("CLINOPS_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL"),
                   first("AWS_ACCESS_KEY_ID", "MINIO_ACCESS_KEY"), first("AWS_SECRET_ACCESS_KEY", "MINIO_SECRET_KEY"),
                   first("AWS_REGION", "AWS_DEFAULT_REGION"))

    def client(self):
        from minio import Minio

        if not self.endpoint:
            raise ValueError("an s3:// store needs an endpoint (CLINOPS_S3_ENDPOINT or AWS_ENDPOINT_URL: "
                             "http(s)://host:port)")
        endpoint = urlparse(self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}")
        return Minio(endpoint.netloc, access_key=self.access_key, secret_key=self.secret_key,
                     secure=endpoint.scheme == "https", region=self.region)


def is_s3(uri: str) -> bool:
    return str(uri).startswith(("s3://", "minio://"))


def join(base: str, *parts: str) -> str:
    return "/".join([str(base).rstrip("/"), *[str(p).strip("/") for p in parts]])


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/prefix`` → ``("bucket", "key/prefix")``."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _missing_key(err: Exception) -> bool:
    return type(err).__name__ == "S3Error" and getattr(err, "code", "") in ("NoSuchKey", "NoSuchBucket")


def upload_dir(local_dir: Path, dest_uri: str, s3: S3Config | None = None) -> str:
    """Copy every file under ``local_dir`` to ``dest_uri`` (replacing a local folder there); returns it."""
    local_dir = Path(local_dir)
    if not is_s3(dest_uri):
        dest = Path(dest_uri)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=_ensure_parent(dest)))
        try:  # copy beside it, then swap in: a reader never sees half a folder
            shutil.copytree(local_dir, staging, dirs_exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return str(dest)
    client = (s3 or S3Config()).client()
    bucket, prefix = split(dest_uri)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(local_dir).as_posix()
        client.fput_object(bucket, join(prefix, relative) if prefix else relative, str(path))
    return dest_uri


def download_dir(src_uri: str, local_dir: Path, s3: S3Config | None = None) -> Path:
    """Copy the folder at ``src_uri`` to ``local_dir``; raises FileNotFoundError when nothing is there."""
    local_dir = Path(local_dir)
    if not is_s3(src_uri):
        if not Path(src_uri).is_dir():
            raise FileNotFoundError(f"no bundle folder at {src_uri}")
        if Path(src_uri).resolve() != local_dir.resolve():
            shutil.copytree(src_uri, local_dir, dirs_exist_ok=True)
        return local_dir
    client = (s3 or S3Config()).client()
    bucket, prefix = split(src_uri)
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


def write_text(dest_uri: str, text: str, s3: S3Config | None = None) -> None:
    """Write one small text object (pointers such as ``champion.json``); a local file is replaced atomically."""
    if not is_s3(dest_uri):
        dest = Path(dest_uri)
        handle, staging = tempfile.mkstemp(prefix=f".{dest.name}-", dir=_ensure_parent(dest))
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(staging, dest)
        return
    client = (s3 or S3Config()).client()
    bucket, key = split(dest_uri)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    data = text.encode()
    client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="application/json")


def read_text(src_uri: str, s3: S3Config | None = None) -> str:
    """The text at ``src_uri``; FileNotFoundError when there is none (local or S3 alike)."""
    if not is_s3(src_uri):
        return Path(src_uri).read_text()
    client = (s3 or S3Config()).client()
    bucket, key = split(src_uri)
    try:
        response = client.get_object(bucket, key)
    except Exception as err:
        if _missing_key(err):
            raise FileNotFoundError(f"nothing stored at {src_uri}") from None
        raise
    try:
        return response.read().decode()
    finally:
        response.close()
        response.release_conn()


def _ensure_parent(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.parent
