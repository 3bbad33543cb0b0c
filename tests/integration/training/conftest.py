"""The training tests' S3: a fresh bucket in moto (in-process) per test, and a local IMDSv2."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import boto3
import pytest
from finops.training.checkpoint import CheckpointStore, S3Location, s3_client
from training_it_support import Imds, serve_imds


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No FINOPS_* from the outside; no S3 client cached from another test's mock."""
    import os

    for name in list(os.environ):
        if name.startswith("FINOPS_"):
            monkeypatch.delenv(name)
    s3_client.cache_clear()
    yield
    s3_client.cache_clear()


def _empty_bucket(client: object, bucket: str) -> None:
    paginator = client.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})  # type: ignore[attr-defined]
    client.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]


@pytest.fixture
def bucket(moto_aws: str) -> Iterator[str]:
    name = f"ckpt-{moto_aws}"
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=name)
    yield name
    _empty_bucket(client, name)


@pytest.fixture
def s3(bucket: str) -> object:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def new_store(bucket: str, s3: object) -> Callable[..., CheckpointStore]:
    """``new_store(prefix)`` -> a CheckpointStore on this test's bucket (one per simulated container)."""

    def make(prefix: str = "job", keep: int = 3) -> CheckpointStore:
        return CheckpointStore(S3Location.parse(f"s3://{bucket}/{prefix}/"), client=s3, keep=keep)

    return make


@pytest.fixture
def imds() -> Iterator[Imds]:
    server = serve_imds()
    yield server
    server.server.shutdown()
    server.server.server_close()
