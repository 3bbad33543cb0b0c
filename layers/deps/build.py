"""Build the runtime-dependency Lambda layer into ``layers/deps/build/python/``.

The dependency list is ``[project].dependencies`` of pyproject.toml (the single source of truth); the
runtime (Python version, architecture) comes from ``infra/runtime.py``. Wheels are manylinux wheels
for that runtime only (``--only-binary=:all:``), so the build never compiles anything and works on
any host. A ``.built`` stamp recording runtime and dependencies is written last: the CDK app refuses
to synthesize without it (or with a stale one).

Usage: ``python layers/deps/build.py`` (``make layers``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from infra.runtime import (  # noqa: E402  (needs the repository root on sys.path first)
    CHARGEBACK_EXTRA,
    CHARGEBACK_LAYER_SUBDIR,
    CORE_LAYER_DIR,
    DEPS_LAYER_DIR,
    GATEWAY_FUNCTION_DIR,
    LAMBDA_ARCH,
    LAMBDA_PYTHON,
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    PIP_PLATFORMS,
    STAMP_NAME,
    layer_stamp,
    project_dependencies,
)

MB = 1024 * 1024


def tree_size(path: Path) -> int:
    """Bytes of regular files under ``path``, skipping what the CDK assets exclude."""
    total = 0
    for item in path.rglob("*"):
        if any(part == "__pycache__" or part.endswith(".egg-info") for part in item.parts):
            continue
        if item.suffix == ".pyc":
            continue
        if item.is_file() and not item.is_symlink():
            total += item.stat().st_size
    return total


def pip_install(dependencies: list[str], target: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "install",
           *[arg for platform in PIP_PLATFORMS for arg in ("--platform", platform)],
           "--implementation", "cp",
           "--python-version", LAMBDA_PYTHON,
           "--only-binary=:all:",
           "--no-compile",
           "--target", str(target),
           "--upgrade", "--quiet",
           *dependencies]
    print(f"$ {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True)  # noqa: S603  (fixed argv, no shell)


def prune(target: Path) -> None:
    """Drop what is useless on Lambda: bytecode for the build host's Python and console scripts."""
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    for pyc in target.rglob("*.pyc"):
        pyc.unlink()
    shutil.rmtree(target / "bin", ignore_errors=True)


def main() -> int:
    started = time.monotonic()
    dependencies = project_dependencies()
    if not dependencies:
        raise SystemExit("pyproject.toml has no [project].dependencies: nothing to put in the layer")
    chargeback = project_dependencies(extra=CHARGEBACK_EXTRA)
    stamp = DEPS_LAYER_DIR / STAMP_NAME
    target = DEPS_LAYER_DIR / "python"
    chargeback_target = DEPS_LAYER_DIR / CHARGEBACK_LAYER_SUBDIR / "python"

    # Start clean: a failed build must not leave a stamp, and a removed dependency must not linger.
    stamp.unlink(missing_ok=True)
    for directory in (target, chargeback_target):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)

    print(f"deps layer: python{LAMBDA_PYTHON} {LAMBDA_ARCH}, {len(dependencies)} dependencies", flush=True)
    pip_install(dependencies, target)
    prune(target)
    print(f"chargeback layer: {len(chargeback)} dependencies", flush=True)
    pip_install(chargeback, chargeback_target)
    prune(chargeback_target)

    deps_size = tree_size(target)
    chargeback_size = tree_size(chargeback_target)
    # The 250 MB limit covers the function code plus all of its layers, unzipped: the chargeback functions
    # carry the most (core + deps + chargeback).
    total = deps_size + chargeback_size + tree_size(CORE_LAYER_DIR) + tree_size(GATEWAY_FUNCTION_DIR)
    print(f"deps layer unzipped: {deps_size / MB:.1f} MB, chargeback layer: {chargeback_size / MB:.1f} MB "
          f"(largest function + its layers: {total / MB:.1f} MB of {LAMBDA_UNZIPPED_LIMIT_BYTES / MB:.0f} MB)")
    if total > LAMBDA_UNZIPPED_LIMIT_BYTES:
        limit = LAMBDA_UNZIPPED_LIMIT_BYTES / MB
        print(f"ERROR: function + layers unzipped is {total / MB:.1f} MB, over Lambda's {limit:.0f} MB "
              "limit; trim [project].dependencies", file=sys.stderr)
        return 1

    stamp.write_text(json.dumps(layer_stamp(dependencies, chargeback), indent=2) + "\n")
    print(f"wrote {stamp.relative_to(ROOT)} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
