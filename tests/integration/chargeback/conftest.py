"""Chargeback integration fixtures: the integration ``gateway_env`` (real handler, moto, simulated provider) plus
a moto S3 bucket, a project -> department map, observe mode and a tax-mode budget."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "chargeback"))  # chargeback_checks

from chargeback_it_support import DEPARTMENTS, ChargebackEnv
from finops import aws
from finops.budgets.policy import load_policy
from finops.chargeback import service


@pytest.fixture
def chargeback_env(gateway_env, load_event, tmp_path: Path) -> Iterator[ChargebackEnv]:
    bucket = f"it-chargeback-{gateway_env.suffix}"
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    policy = json.loads(json.dumps(load_policy().model_dump(mode="json")))
    # checkout-web runs over a tiny daily budget in tax mode: later calls carry a surcharge (tax_usd)
    policy["projects"] = {"checkout-web": {"daily_usd": 0.0005, "tax": {"multiplier": 1.5, "ceiling_usd": 5}}}
    policy_file = tmp_path / "budgets.json"
    policy_file.write_text(json.dumps(policy))
    gateway_env.set(FINOPS_CHARGEBACK_BUCKET=bucket, FINOPS_PROJECT_DEPARTMENTS=json.dumps(DEPARTMENTS),
                    FINOPS_ENFORCEMENT_MODE="observe", FINOPS_BUDGET_POLICY_PATH=str(policy_file),
                    FINOPS_WORK_DIR=str(tmp_path / "work"))
    service.reset()
    env = ChargebackEnv(gateway_env, bucket, tmp_path, load_event)
    try:
        yield env
    finally:
        service.reset()
        with contextlib.suppress(Exception):
            env.store.delete(env.store.list(""))
            versions = s3.list_object_versions(Bucket=bucket)
            for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
                s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        s3.delete_bucket(Bucket=bucket)
