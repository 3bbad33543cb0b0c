"""A tiny synthetic RouteLLM-shaped data set (splits.json, MMLU CSVs, contaminated prompts) for fast tests."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from finops.routing.data import STRONG, WEAK

TRAIN = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
HELDOUT = ("omega", "psi")
CONTAMINATED = "Which planet is the leaked one?\nA. Mars\nB. Venus\nC. Earth\nD. Jupiter\nAnswer:"


def _question(rng: random.Random, subject: str, i: int) -> tuple[str, bool, bool]:
    hard = rng.random() < 0.4
    stem = f"In {subject}, compute {rng.randint(2, 99)} * {rng.randint(2, 99)} and explain question {i}. "
    stem *= 3 if hard else 1
    options = "\n".join(f"{letter}. {rng.choice(['apple', 'stone', str(rng.randint(1, 500)), 'river bank'])}"
                        for letter in "ABCD")
    weak = rng.random() < (0.3 if hard else 0.8)
    strong = rng.random() < (0.8 if hard else 0.9)
    return f"{stem}\n{options}\nAnswer:", weak, strong


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("router-data")
    (root / "splits.json").write_text(json.dumps({"train_subjects": list(TRAIN), "heldout_subjects": list(HELDOUT)}))
    (root / "mmlu").mkdir()
    rng = random.Random(7)
    for subject in TRAIN + HELDOUT:
        with (root / "mmlu" / f"mmlu_{subject}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["prompt", WEAK, STRONG])
            for i in range(40):
                prompt, weak, strong = _question(rng, subject, i)
                w.writerow([prompt, weak, strong])
            if subject == "beta":
                w.writerow([CONTAMINATED, True, True])
    (root / "mmlu" / "contaminated_prompts.jsonl").write_text(
        json.dumps({"train_prompt": CONTAMINATED, "eval_prompt": CONTAMINATED, "train_idx": 1, "eval_idx": 2}) + "\n")
    return root


@pytest.fixture(scope="session")
def shared_root() -> Path:
    from finops.routing.data import default_root

    root = default_root()
    if not (root / "splits.json").exists():
        pytest.skip("shared/data/router is not beside the checkout")
    return root
