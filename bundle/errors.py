"""What a reader of a malformed or tampered bundle is told: always the bundle, the file and what is wrong."""

from __future__ import annotations


class BundleError(ValueError):
    """A bundle that cannot be served. ``file`` is the bundle-relative name of the culprit (or None)."""

    def __init__(self, folder, file: str | None, problem: str):
        self.folder = str(folder)
        self.file = file
        self.problem = problem
        where = f"{self.folder}/{file}" if file else self.folder
        super().__init__(f"serving bundle {where}: {problem}")


class MissingFile(BundleError):
    """A file the layout or the manifest requires is absent."""


class IntegrityError(BundleError):
    """A file differs from what the manifest recorded (size or sha256): truncated, replaced or edited."""


class MalformedFile(BundleError):
    """A contract file (JSON) is not valid, or a field has the wrong type or value."""
