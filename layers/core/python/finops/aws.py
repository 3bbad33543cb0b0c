"""Cached AWS client factories. Nothing is created at import time.

Endpoints come from botocore's own configuration, so ``AWS_ENDPOINT_URL`` points every client (and
PynamoDB) at the local emulator without code changes.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

RETRIES = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, region_name=region(), config=RETRIES)
