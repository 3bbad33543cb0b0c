"""CDK app entry: ``python infra/app.py`` synthesizes the gateway into cdk.out/ (``cdk deploy`` runs it too).

Offline by design: the stack is environment-agnostic (no account, no lookups) and assets are plain
directories (no Docker bundling). cdk-nag's AwsSolutions pack runs on every synth; an unacknowledged
finding fails the synth and is written to ``cdk.out/validation-report.json``.
"""
# ruff: noqa: E402  (sys.path must be fixed before the imports below)

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

_INFRA = Path(__file__).resolve().parent
ROOT = _INFRA.parent
# `python infra/app.py` puts infra/ first on sys.path, where infra/constructs would shadow the
# `constructs` library; the app imports `infra.*` and `finops.*` from the repository instead.
if sys.path and Path(sys.path[0] or ".").resolve() == _INFRA:
    sys.path.pop(0)
for _path in (str(ROOT / "layers" / "core" / "python"), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.constructs.layers import DepsLayerNotBuilt
from infra.stacks.gateway_stack import GatewayStack
from infra.stacks.spot_training_stack import SpotTrainingStack

STACK_NAME = "FinOpsGateway"
SPOT_STACK_NAME = "FinOpsSpotTraining"


def build_app(outdir: str | Path | None = None, *, deps_layer_dir: str | Path | None = None,
              spot_training: bool = False) -> cdk.App:
    """The app with the gateway stack and cdk-nag registered; call ``.synth()`` on it.

    ``deps_layer_dir`` replaces ``layers/deps/build`` (tests use a stub so they need no pip download).
    ``spot_training`` adds the spot-training stack (``SPOT_STACK_NAME``), which writes to the gateway's ledger.
    """
    outdir = outdir or os.environ.get("CDK_OUTDIR") or ROOT / "cdk.out"
    app = cdk.App(outdir=str(outdir))
    gateway = GatewayStack(
        app, STACK_NAME,
        description="AI FinOps gateway: OpenAI-compatible API, cost tags, budgets, usage ledger",
        deps_layer_dir=Path(deps_layer_dir) if deps_layer_dir else None,
    )
    if spot_training:
        SpotTrainingStack(
            app, SPOT_STACK_NAME,
            description="AI FinOps spot training: zone hunter, Batch Spot/On-Demand, checkpoints, ledger rows",
            ledger=gateway.ledger,
            deps_layer_dir=Path(deps_layer_dir) if deps_layer_dir else None,
        )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def main() -> int:
    started = time.monotonic()
    try:
        app = build_app(spot_training=True)
    except DepsLayerNotBuilt as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        if "ValidationFailed" not in str(exc):
            raise
        print(f"cdk-nag: unacknowledged AwsSolutions findings, synth failed ({exc})", file=sys.stderr)
        return 1
    print(f"synthesized {STACK_NAME} and {SPOT_STACK_NAME} into {assembly.directory} "
          f"in {time.monotonic() - started:.1f} s "
          "(cdk-nag AwsSolutions: no unacknowledged findings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
