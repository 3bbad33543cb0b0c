"""Where the chargeback files live: an S3 bucket, or a local directory standing in for one (``make run``).

Both speak in bucket-relative keys (``usage/dt=2026-11-28/part-00000.parquet``) and whole files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol


class ObjectStore(Protocol):
    def put(self, key: str, path: Path) -> None: ...

    def list(self, prefix: str) -> dict[str, int]:
        """key -> size in bytes of every object under ``prefix``."""
        ...

    def delete(self, keys: Iterable[str]) -> None: ...

    def get(self, key: str, path: Path) -> None: ...

    def uri(self, key: str = "") -> str: ...


class LocalStore:
    """A directory laid out like the bucket. Writes are atomic (temp file + rename), like an S3 PUT."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"key {key!r} escapes {self.root}")
        return path

    def put(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    def list(self, prefix: str) -> dict[str, int]:
        if not self.root.is_dir():
            return {}
        found = {}
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found[key] = path.stat().st_size
        return found

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def get(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(key), path)

    def uri(self, key: str = "") -> str:
        return str(self.root / key)


class S3Store:
    """One bucket through a boto3 S3 client. Objects are encrypted by the bucket's default (SSE-KMS)."""

    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self.client = client

    def put(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, key)

    def list(self, prefix: str) -> dict[str, int]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                found[obj["Key"]] = int(obj["Size"])
        return found

    def delete(self, keys: Iterable[str]) -> None:
        pending = sorted(keys)
        for start in range(0, len(pending), 1000):  # DeleteObjects takes up to 1000 keys
            batch = pending[start:start + 1000]
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            if response.get("Errors"):
                errors = response["Errors"][:3]
                raise RuntimeError(f"S3 DeleteObjects failed in bucket {self.bucket}: {errors}")

    def get(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, key, str(path))

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"


def download_prefix(store: ObjectStore, prefix: str, dest: Path) -> list[Path]:
    """Copy every object under ``prefix`` to ``dest``/<key>; returns the local paths."""
    paths = []
    for key in sorted(store.list(prefix)):
        path = dest / key
        store.get(key, path)
        paths.append(path)
    return paths
