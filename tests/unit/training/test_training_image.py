"""The training image: what the Dockerfile copies is all ``python -m finops.training`` needs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
IMAGE = ROOT / "infra/images/training"


def _copies() -> list[tuple[str, str]]:
    pairs = []
    for line in (IMAGE / "Dockerfile").read_text().splitlines():
        match = re.match(r"^COPY\s+(\S+)\s+(\S+)$", line.strip())
        if match:
            pairs.append((match.group(1), match.group(2)))
    return pairs


def test_dockerfile_copies_existing_paths_and_runs_the_module() -> None:
    copies = _copies()
    assert copies and all((ROOT / src).exists() for src, _ in copies)
    assert 'ENTRYPOINT ["python", "-m", "finops.training"]' in (IMAGE / "Dockerfile").read_text()


def test_the_copied_files_alone_make_a_working_entrypoint(tmp_path: Path) -> None:
    """Lay the image's /app out from the Dockerfile's COPY lines and run the entrypoint from there."""
    app = tmp_path / "app"
    for src, dst in _copies():
        if not dst.startswith("/app/"):
            continue
        target = app / dst.removeprefix("/app/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / src, target)
    code = (
        "import sys, finops.training.__main__ as entry, finops.training.tiny\n"
        "print(entry.__file__)\n"
        "print(sorted(m for m in sys.modules if m.startswith('finops.') and not m.startswith('finops.training')))\n"
        "print(entry.main())\n"  # without its configuration: a reported failure (1), not a crash
    )
    env = {"PYTHONPATH": str(app), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    where, others, exit_code = out.stdout.split("\n")[:3]
    assert Path(where).is_relative_to(app)  # the copied files, not the repository's
    assert others == "[]"
    assert exit_code == "1" and "checkpoint_uri" in out.stderr


def test_image_pins_the_same_torch_as_the_training_extra() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["training"]
    requirements = [line.strip() for line in (IMAGE / "requirements.txt").read_text().splitlines()]
    assert [r for r in requirements if r.startswith("torch")] == [e for e in extra if e.startswith("torch")]
