"""Where Ray Train keeps a run's checkpoints and results: a local folder, or ``s3://bucket/prefix``.

A multi-pod RayJob needs the second: Ray Train writes every checkpoint through the storage
filesystem from the worker that reports it and reads it back on the driver (and on every worker
when a run resumes), so a folder on the head pod is out of reach of the worker pods. For S3/MinIO the
filesystem is pyarrow's ``S3FileSystem`` built from the project's S3 connection (endpoint, keys,
region), handed to Ray Train as ``RunConfig(storage_filesystem=...)`` with the scheme-less path, the
form Ray Train asks for when it is given a filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from bundle.storage import S3Config, is_s3


@dataclass(frozen=True)
class RayStorage:
    """``RunConfig(storage_path=path, storage_filesystem=filesystem)``; ``filesystem`` None = local."""

    path: str
    filesystem: object | None = None  # pyarrow.fs.FileSystem

    @property
    def remote(self) -> bool:
        return self.filesystem is not None

    def run_path(self, name: str) -> str:
        """The folder of run ``name`` under this storage (as Ray Train lays it out)."""
        return f"{self.path.rstrip('/')}/{name}"

    def delete_run(self, name: str) -> None:
        """Remove run ``name``'s folder (nothing when it is not there)."""
        if self.filesystem is None:
            import shutil

            shutil.rmtree(self.run_path(name), ignore_errors=True)
            return
        import pyarrow.fs

        if self.filesystem.get_file_info(self.run_path(name)).type != pyarrow.fs.FileType.NotFound:
            self.filesystem.delete_dir(self.run_path(name))


def s3_filesystem(s3: S3Config):
    """pyarrow's S3 filesystem for the project's S3/MinIO connection (path-style addressing, as MinIO
    serves it); creates the bucket on first use, as the bundle store's uploads do."""
    import pyarrow.fs

    options: dict = {"access_key": s3.access_key, "secret_key": s3.secret_key, "region": s3.region or "us-east-1",
                     "force_virtual_addressing": False, "allow_bucket_creation": True}
    if s3.endpoint:
        endpoint = urlparse(s3.endpoint if "://" in s3.endpoint else f"http://{s3.endpoint}")
        options |= {"endpoint_override": endpoint.netloc, "scheme": endpoint.scheme or "http"}
    return pyarrow.fs.S3FileSystem(**options)


def resolve(storage_path: str, s3: S3Config | None = None) -> RayStorage:
    """``s3://bucket/prefix`` (or ``minio://``) → the bucket/prefix path with an S3 filesystem; any other
    value is a local folder, passed through."""
    if not is_s3(storage_path):
        return RayStorage(str(storage_path))
    parsed = urlparse(storage_path)
    path = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    return RayStorage(path, s3_filesystem(s3 or S3Config()))
