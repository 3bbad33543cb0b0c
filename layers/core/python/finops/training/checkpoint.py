"""The S3 checkpoint store: object first, manifest second, so a reader never sees half a checkpoint.

Layout under the checkpoint prefix (``s3://bucket/prefix/``)::

    objects/step-0000000150-<token>.pt     the serialised state (bytes from finops.training.state)
    manifests/step-0000000150.json         {"step", "key", "sha256", "size", "created_at", "run_id"}
    progress.json                          {"step", "total_steps", "done", ...} for the workflow

Saving writes the object, then its manifest: one manifest per generation. A crash between the two leaves an
object no manifest points to, so the previous generation stays the resume point (the orphan is deleted by the
next save). Loading walks the generations newest first and takes the first whose object exists and matches
its manifest's size and sha256; a missing or corrupt object falls back to the previous generation. The store
keeps the newest ``keep`` generations and deletes older ones; a save also deletes any generation newer than
itself (one that was skipped over because it was unreadable: training redid those steps).

S3 has strong read-after-write consistency, and a single PUT is atomic, so a manifest is either absent or
complete.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)

_STEP_KEY = re.compile(r"step-(\d{10})")
_MISSING = {"NoSuchKey", "404", "NotFound"}


class CheckpointManifest(BaseModel, frozen=True):
    step: int = Field(ge=0)
    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    created_at: datetime
    run_id: str | None = None


class Progress(BaseModel, frozen=True):
    """What the workflow reads after an exit code 0: finished, or stopped early (time box)."""

    step: int = Field(ge=0)
    total_steps: int = Field(gt=0)
    done: bool
    reason: str | None = None
    run_id: str | None = None
    updated_at: datetime | None = None


class Loaded(BaseModel, frozen=True):
    manifest: CheckpointManifest
    data: bytes


class S3Location(BaseModel, frozen=True):
    bucket: str
    prefix: str  # "" or ends with "/"

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith("s3://"):
            raise ValueError(f"checkpoint URI must look like s3://bucket/prefix/, not {uri!r}")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"checkpoint URI has no bucket: {uri!r}")
        prefix = prefix.strip("/")
        return cls(bucket=bucket, prefix=f"{prefix}/" if prefix else "")


@cache
def s3_client() -> Any:
    """The store's client: longer timeouts than the Lambdas' (checkpoints can be large), more retries."""
    config = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=120)
    return boto3.session.Session().client("s3", config=config)


def _step_of(key: str) -> int | None:
    match = _STEP_KEY.search(key.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


class CheckpointStore:
    def __init__(self, location: S3Location, *, client: Any | None = None, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.location = location
        self.client = client if client is not None else s3_client()
        self.keep = keep

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def _key(self, name: str) -> str:
        return f"{self.location.prefix}{name}"

    def manifest_key(self, step: int) -> str:
        return self._key(f"manifests/step-{step:010d}.json")

    @property
    def progress_key(self) -> str:
        return self._key("progress.json")

    # -- write ---------------------------------------------------------------------------------------

    def write_object(self, step: int, data: bytes) -> str:
        """Upload the checkpoint's bytes (multipart when large); returns its key. No manifest yet."""
        key = self._key(f"objects/step-{step:010d}-{uuid.uuid4().hex[:12]}.pt")
        self.client.upload_fileobj(io.BytesIO(data), self.bucket, key)
        return key

    def write_manifest(self, manifest: CheckpointManifest) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.manifest_key(manifest.step),
                               Body=manifest.model_dump_json().encode(), ContentType="application/json")

    def save(self, step: int, data: bytes, *, run_id: str | None = None) -> CheckpointManifest:
        key = self.write_object(step, data)
        manifest = CheckpointManifest(step=step, key=key, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                      created_at=datetime.now(UTC), run_id=run_id)
        self.write_manifest(manifest)
        self.prune(current=step)
        log.info("checkpoint saved step=%d size=%d key=%s", step, len(data), key)
        return manifest

    def write_progress(self, progress: Progress) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.progress_key,
                               Body=progress.model_dump_json().encode(), ContentType="application/json")

    # -- read ----------------------------------------------------------------------------------------

    def _list(self, folder: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(folder)):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def generations(self) -> list[int]:
        """Steps that have a manifest, newest first."""
        steps = {_step_of(key) for key in self._list("manifests/")}
        return sorted((s for s in steps if s is not None), reverse=True)

    def _get(self, key: str) -> bytes | None:
        buffer = io.BytesIO()
        try:
            self.client.download_fileobj(self.bucket, key, buffer)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        return buffer.getvalue()

    def read_manifest(self, step: int) -> CheckpointManifest | None:
        raw = self._get(self.manifest_key(step))
        if raw is None:
            return None
        try:
            return CheckpointManifest.model_validate_json(raw)
        except ValidationError:
            log.warning("checkpoint manifest for step %d is unreadable; skipping it", step)
            return None

    def load(self) -> Loaded | None:
        """The newest generation whose object is present and intact, or None (start from scratch)."""
        for step in self.generations():
            manifest = self.read_manifest(step)
            if manifest is None:
                continue
            data = self._get(manifest.key)
            if data is None:
                log.warning("checkpoint object %s is missing; falling back to the previous one", manifest.key)
                continue
            if len(data) != manifest.size or hashlib.sha256(data).hexdigest() != manifest.sha256:
                log.warning("checkpoint object %s fails its checksum; falling back to the previous one",
                            manifest.key)
                continue
            return Loaded(manifest=manifest, data=data)
        return None

    def read_progress(self) -> Progress | None:
        raw = self._get(self.progress_key)
        return Progress.model_validate_json(raw) if raw is not None else None

    # -- retention -----------------------------------------------------------------------------------

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            self.client.delete_objects(Bucket=self.bucket,
                                       Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})

    def prune(self, *, current: int) -> None:
        """Keep the newest ``keep`` generations up to ``current``; drop the rest and unreferenced objects."""
        steps = self.generations()
        stale = [s for s in steps if s > current]  # skipped over on load: those steps were trained again
        kept = [s for s in steps if s <= current][: self.keep]
        old = [s for s in steps if s <= current][self.keep:]
        referenced: set[str] = set()
        for step in kept:
            manifest = self.read_manifest(step)
            if manifest is not None:
                referenced.add(manifest.key)
        # Manifests go first, so no manifest ever points at a deleted object.
        self._delete([self.manifest_key(s) for s in stale + old])
        orphans = [key for key in self._list("objects/")
                   if key not in referenced and (_step_of(key) or 0) <= current]
        self._delete(orphans)
