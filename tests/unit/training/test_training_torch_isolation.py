"""torch (hundreds of MB) belongs to the training container only: no Lambda code may import it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "layers/core/python/finops"


def _imports_torch(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(name == "torch" or name.startswith("torch.") for name in names):
            return True
        # Lambda code must not reach torch indirectly through the training package either.
        if any(name.startswith("finops.training") for name in names):
            return True
    return False


def test_only_finops_training_imports_torch() -> None:
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "functions").rglob("*.py"), *(ROOT / "infra").rglob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in sources
                 if PACKAGE / "training" not in p.parents and _imports_torch(p)]
    assert offenders == []
    assert _imports_torch(PACKAGE / "training" / "loop.py")  # the scan does see torch imports


def test_importing_the_training_package_itself_does_not_load_torch() -> None:
    code = "import sys, finops.training, finops.training.settings; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "layers/core/python")}, timeout=60)
    assert out.stdout.strip() == "False"
