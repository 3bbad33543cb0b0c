"""The RouteLLM labelled data (``shared/data/router``): loading, decontamination and the train/validation split.

Used by the training and evaluation scripts and by tests, never on the request path. Every loader drops
the contaminated prompts of *every* benchmark (both the upstream ``train_prompt`` and ``eval_prompt`` text),
and :func:`split_train_validation` only ever sees ``splits.json``'s ``train_subjects``: held-out subjects,
GSM8K and MT-Bench are acceptance data (never trained on, never calibrated on, never used to pick features).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
BENCHMARKS = ("mmlu", "gsm8k", "mt_bench")

csv.field_size_limit(1 << 24)


@dataclass(frozen=True)
class Example:
    """One routable prompt: the text the router sees, and each model's quality on it.

    For MMLU/GSM8K quality is correctness (0/1); for MT-Bench the mean GPT-4 judge score (1-10) over both turns.
    """

    prompt: str
    weak: float
    strong: float
    group: str  # MMLU subject, or the benchmark name

    @property
    def weak_fails(self) -> bool:
        return self.weak < self.strong


@dataclass(frozen=True)
class Splits:
    train_subjects: tuple[str, ...]
    heldout_subjects: tuple[str, ...]

    def check(self) -> None:
        overlap = set(self.train_subjects) & set(self.heldout_subjects)
        if overlap:
            raise ValueError(f"subjects both in train and held-out: {sorted(overlap)}")


def default_root() -> Path:
    """``shared/data/router`` beside the checkout (as in CI), or ``$FINOPS_ROUTER_DATA`` for the scripts."""
    import os

    env = os.environ.get("FINOPS_ROUTER_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "router"
        if candidate.is_dir():
            return candidate
    return Path("../shared/data/router")


def load_splits(root: Path) -> Splits:
    raw = json.loads((root / "splits.json").read_text())
    splits = Splits(tuple(raw["train_subjects"]), tuple(raw["heldout_subjects"]))
    splits.check()
    return splits


def _norm(text: str) -> str:
    return " ".join(text.split())


def contaminated_prompts(root: Path) -> frozenset[str]:
    """Every contaminated prompt of every benchmark, both sides, whitespace-normalised."""
    out: set[str] = set()
    for bench in BENCHMARKS:
        path = root / bench / "contaminated_prompts.jsonl"
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                for key in ("eval_prompt", "train_prompt"):
                    if row.get(key):
                        out.add(_norm(row[key]))
    return frozenset(out)


def _bool(text: str) -> float:
    if text not in ("True", "False"):
        raise ValueError(f"expected True/False, got {text!r}")
    return 1.0 if text == "True" else 0.0


def load_mmlu(root: Path, subjects: tuple[str, ...] | list[str], drop: frozenset[str] | None = None) -> list[Example]:
    drop = contaminated_prompts(root) if drop is None else drop
    out: list[Example] = []
    for subject in subjects:
        with (root / "mmlu" / f"mmlu_{subject}.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                if _norm(row["prompt"]) in drop:
                    continue
                out.append(Example(row["prompt"], _bool(row[WEAK]), _bool(row[STRONG]), subject))
    return out


def load_gsm8k(root: Path, drop: frozenset[str] | None = None) -> list[Example]:
    drop = contaminated_prompts(root) if drop is None else drop
    out: list[Example] = []
    with (root / "gsm8k" / "gsm8k_responses.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if _norm(row["prompt"]) in drop:
                continue
            out.append(Example(row["prompt"], _bool(row[WEAK]), _bool(row[STRONG]), "gsm8k"))
    return out


def load_mt_bench(root: Path, drop: frozenset[str] | None = None) -> list[Example]:
    """One example per question, routed on its first turn (as RouteLLM does); quality = mean judge score of the
    routed model over the question's judgements (both turns). A question is dropped if either turn is
    contaminated."""
    drop = contaminated_prompts(root) if drop is None else drop
    scores: dict[tuple[int, str], list[float]] = {}
    for line in (root / "mt_bench" / "judgements.jsonl").read_text().splitlines():
        if line.strip():
            j = json.loads(line)
            scores.setdefault((j["question_id"], j["model"]), []).append(float(j["score"]))
    out: list[Example] = []
    for line in (root / "mt_bench" / "question.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        q = json.loads(line)
        if any(_norm(turn) in drop for turn in q["turns"]):
            continue
        weak, strong = scores[(q["question_id"], WEAK)], scores[(q["question_id"], STRONG)]
        out.append(Example(q["turns"][0], sum(weak) / len(weak), sum(strong) / len(strong), "mt_bench"))
    return out


def split_train_validation(splits: Splits, seed: int = 0, validation_fraction: float = 0.2
                           ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Carve validation *subjects* out of ``train_subjects`` (seeded): the validation set then looks like the
    held-out acceptance data (unseen subjects), which is what the threshold and hyper-parameters must
    generalise to. Only ``train_subjects`` are ever looked at."""
    subjects = sorted(splits.train_subjects)
    rng = random.Random(seed)
    rng.shuffle(subjects)
    n_val = max(1, round(len(subjects) * validation_fraction))
    return tuple(sorted(subjects[n_val:])), tuple(sorted(subjects[:n_val]))
