"""Train the router's complexity classifier and write the shipped artifact.

    .venv/bin/python scripts/train_router.py [--data ../shared/data/router] [--seed 0]
        [--out layers/core/python/finops/data/router]

Reads only ``splits.json``'s ``train_subjects`` (decontaminated); see ``finops.routing.training``. Writes
``classifier.npz`` and ``classifier.json`` (with the npz's sha256, checked by the loader). Same data + seed ->
same bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers/core/python"))

os.environ.setdefault("OMP_NUM_THREADS", "1")  # deterministic BLAS reductions
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from finops.routing import data as rdata  # noqa: E402
from finops.routing.training import TrainConfig, save, train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="shared/data/router (default: beside the checkout)")
    parser.add_argument("--out", type=Path, default=ROOT / "layers/core/python/finops/data/router")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-strong-share", type=float, default=0.5)
    args = parser.parse_args(argv)
    root = args.data or rdata.default_root()
    started = time.perf_counter()
    arrays, meta = train(root, TrainConfig(seed=args.seed, target_strong_share=args.target_strong_share))
    digest = save(arrays, meta, args.out)
    size = (args.out / "classifier.npz").stat().st_size
    print(f"wrote {args.out}/classifier.npz ({size / 1e6:.2f} MB, sha256 {digest}) in "
          f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
