"""Reads ``progress.json``, which the training container writes next to its checkpoints.

``{"step": n, "total_steps": N, "done": bool}``; no file yet means no step has been checkpointed.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from .workflow import Progress

PROGRESS_FILE = "progress.json"


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def read_progress(s3: Any, checkpoint_uri: str, total_steps: int) -> Progress:
    bucket, prefix = split_s3_uri(checkpoint_uri)
    key = f"{prefix.rstrip('/')}/{PROGRESS_FILE}" if prefix else PROGRESS_FILE
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return Progress(step=0, total_steps=total_steps, done=False)
    return Progress.model_validate(json.loads(body))
