"""The Lambda runtime the gateway runs on: one source of truth for the CDK app and the layer build.

Deliberately free of CDK imports, so ``layers/deps/build.py`` can read it without starting jsii.

Why Python 3.14: it is the newest Lambda Python runtime this CDK knows (cdk-nag's AwsSolutions-L1
flags anything older), and every compiled dependency (tiktoken, pydantic-core, wrapt, regex, ...)
ships cp314 aarch64 wheels. Python 3.12+ Lambda runtimes run on Amazon Linux 2023 (glibc 2.34), so
wheels tagged up to ``manylinux_2_34`` load there; tiktoken >= 0.12 only ships ``manylinux_2_28``
aarch64 wheels, which is why the plain ``manylinux2014`` tag alone is not enough.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

LAMBDA_PYTHON = "3.14"
LAMBDA_ARCH = "arm64"  # Graviton: cheaper per GB-second than x86_64

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
CORE_LAYER_DIR = ROOT / "layers" / "core"
DEPS_LAYER_DIR = ROOT / "layers" / "deps" / "build"
# The chargeback functions' extra layer, built beside the shared one (and excluded from it).
CHARGEBACK_LAYER_SUBDIR = "chargeback"
CHARGEBACK_EXTRA = "chargeback"
STAMP_NAME = ".built"
GATEWAY_FUNCTION_DIR = ROOT / "functions" / "gateway"
GATEWAY_STREAM_FUNCTION_DIR = ROOT / "functions" / "gateway_stream"

# Lambda's hard limit for a function plus all of its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024

_MACHINE = {"arm64": "aarch64", "x86_64": "x86_64"}[LAMBDA_ARCH]
# Wheel platform tags pip may pick, oldest first; all load on Amazon Linux 2023 (glibc 2.34).
PIP_PLATFORMS = tuple(f"{tag}_{_MACHINE}" for tag in ("manylinux2014", "manylinux_2_28", "manylinux_2_34"))


def project_dependencies(pyproject: Path = PYPROJECT, extra: str | None = None) -> list[str]:
    """``[project].dependencies`` (what the shared deps layer ships), or an optional extra's list."""
    with pyproject.open("rb") as fh:
        project = tomllib.load(fh)["project"]
    return list(project["optional-dependencies"][extra] if extra else project["dependencies"])


def layer_stamp(dependencies: list[str], chargeback: list[str] | None = None) -> dict[str, Any]:
    """What ``layers/deps/build/.built`` records, and what the CDK app expects to find there."""
    if chargeback is None:
        chargeback = project_dependencies(extra=CHARGEBACK_EXTRA)
    return {"python": LAMBDA_PYTHON, "arch": LAMBDA_ARCH, "dependencies": sorted(dependencies),
            CHARGEBACK_EXTRA: sorted(chargeback)}
