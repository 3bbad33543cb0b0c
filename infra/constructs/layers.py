"""The Lambda layers: the ``finops`` package (layers/core), its third-party dependencies, and the chargeback
functions' own (DuckDB, sqlglot), kept out of the gateway's layers."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.runtime import (
    CHARGEBACK_LAYER_SUBDIR,
    CORE_LAYER_DIR,
    DEPS_LAYER_DIR,
    LAMBDA_ARCH,
    LAMBDA_PYTHON,
    STAMP_NAME,
    layer_stamp,
    project_dependencies,
)

# Never shipped: bytecode of the build host's Python, editable-install metadata, the build stamp.
ASSET_EXCLUDE = ["**/__pycache__", "*.pyc", "*.egg-info", STAMP_NAME]


def lambda_runtime() -> lambda_.Runtime:
    """The CDK runtime object for ``infra.runtime.LAMBDA_PYTHON``."""
    name = "PYTHON_" + LAMBDA_PYTHON.replace(".", "_")
    runtime = getattr(lambda_.Runtime, name, None)
    if runtime is None:
        raise ValueError(f"this aws-cdk-lib has no lambda Runtime.{name}: upgrade it or change LAMBDA_PYTHON")
    return runtime


def lambda_architecture() -> lambda_.Architecture:
    return {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}[LAMBDA_ARCH]


class DepsLayerNotBuilt(RuntimeError):
    pass


def check_deps_build(deps_dir: Path) -> None:
    """Fail loudly unless ``deps_dir`` holds a build for this runtime and this dependency list."""
    stamp = deps_dir / STAMP_NAME
    if not stamp.is_file():
        raise DepsLayerNotBuilt(
            f"The dependency layer is not built ({stamp} is missing). Run `make layers` "
            "(python layers/deps/build.py) before synthesizing."
        )
    try:
        built = json.loads(stamp.read_text())
    except ValueError:
        built = None
    expected = layer_stamp(project_dependencies())
    if built != expected:
        raise DepsLayerNotBuilt(
            f"The dependency layer in {deps_dir} is stale: it was built for {built}, the app needs "
            f"{expected}. Run `make layers` (python layers/deps/build.py)."
        )


class GatewayLayers(Construct):
    """``core``: the shared ``finops`` package; ``deps``: pyproject's runtime dependencies (wheels)."""

    def __init__(self, scope: Construct, construct_id: str, *, deps_dir: Path | None = None) -> None:
        super().__init__(scope, construct_id)
        deps_dir = Path(deps_dir or DEPS_LAYER_DIR)
        check_deps_build(deps_dir)
        compat = {
            "compatible_runtimes": [lambda_runtime()],
            "compatible_architectures": [lambda_architecture()],
        }

        self.core = lambda_.LayerVersion(
            self, "Core",
            code=lambda_.Code.from_asset(str(CORE_LAYER_DIR), exclude=ASSET_EXCLUDE),
            description="finops: the gateway's domain package (tags, pricing, ledger, providers)",
            **compat,
        )
        self.deps = lambda_.LayerVersion(
            self, "Deps",
            code=lambda_.Code.from_asset(str(deps_dir), exclude=[*ASSET_EXCLUDE, CHARGEBACK_LAYER_SUBDIR]),
            description=f"Runtime dependencies from pyproject.toml (python{LAMBDA_PYTHON}, {LAMBDA_ARCH})",
            **compat,
        )
        chargeback_dir = deps_dir / CHARGEBACK_LAYER_SUBDIR
        if not (chargeback_dir / "python").is_dir():
            raise DepsLayerNotBuilt(f"{chargeback_dir} is missing. Run `make layers` (python layers/deps/build.py).")
        self.chargeback = lambda_.LayerVersion(
            self, "ChargebackDeps",
            code=lambda_.Code.from_asset(str(chargeback_dir), exclude=ASSET_EXCLUDE),
            description="The chargeback functions' own dependencies (DuckDB, sqlglot): kept off the gateway",
            **compat,
        )

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        """What every function gets."""
        return [self.core, self.deps]

    @property
    def for_chargeback(self) -> list[lambda_.ILayerVersion]:
        return [self.core, self.deps, self.chargeback]
