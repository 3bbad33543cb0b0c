"""The shipped classifier: loads offline (the suite blocks the network), matches its hash, predicts
deterministically, stays small and fast to load."""

from __future__ import annotations

import hashlib
import io
import json
import math

import numpy as np
import pytest
from finops.routing.features import DENSE_NAMES, extract, prompt_text, terms
from finops.routing.model import Classifier, artifact_dir

PROMPTS = [
    "What is 2+2?",
    "Write a haiku about autumn.",
    "Analyze the legal risks of this clause: the supplier shall indemnify the buyer against all claims. " * 8,
    "Which of the following is NOT a prime number?\nA. 2\nB. 3\nC. 9\nD. 11\nAnswer:",
    "\u00dcn\u00efc\u00f6d\u00e9 \u2014 \u4e2d\u6587 \u201cquotes\u201d 3.5 \u00d7 2 = ?",
    "",
]


def test_artifact_hash_matches_metadata() -> None:
    meta = json.loads((artifact_dir() / "classifier.json").read_text())
    blob = (artifact_dir() / "classifier.npz").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == meta["sha256"]
    assert len(blob) == meta["bytes"] <= 5_000_000
    assert meta["dense_names"] == list(DENSE_NAMES)
    # trained and calibrated on training subjects only
    import finops.routing.data as rdata

    root = rdata.default_root()
    if (root / "splits.json").exists():
        splits = rdata.load_splits(root)
        used = set(meta["training"]["fit_subjects"]) | set(meta["training"]["validation_subjects"])
        assert used <= set(splits.train_subjects)
        assert not used & set(splits.heldout_subjects)


def test_loads_and_predicts_deterministically() -> None:  # how fast: make bench / make router-eval
    a = Classifier.load()
    b = Classifier.load()
    for p in PROMPTS:
        sa, sb = a.score(p), b.score(p)
        assert sa == sb
        assert 0.0 <= sa <= 1.0
        assert a.score(p) == sa


def test_scores_rank_sensibly() -> None:
    clf = Classifier.load()
    assert clf.score("hi") < clf.meta["calibration"]["threshold"]
    assert clf.score(PROMPTS[2]) > clf.meta["calibration"]["threshold"]


def test_calibration_grid_is_monotone() -> None:
    grid = Classifier.load().meta["calibration"]["grid"]
    thresholds = [row["threshold"] for row in sorted(grid, key=lambda r: r["target_share"])]
    assert thresholds == sorted(thresholds, reverse=True)
    assert Classifier.load().meta["calibration"]["target_strong_share"] == pytest.approx(0.5)


def test_features_are_bounded_and_total() -> None:
    dense, words = extract("word " * 200_000)
    assert len(dense) == len(DENSE_NAMES)
    assert len(words) < 500  # only the head and tail windows are tokenised
    assert extract("")[1] == []
    assert extract("The 3.5 cats")[1] == [b"the", b"#", b"#", b"cats"]
    assert terms([b"the", b"#", b"#", b"cats"]) == [b"the", b"#", b"#", b"cats", b"the #", b"# #", b"# cats"]
    assert prompt_text([{"role": "system", "content": "sys"}, {"role": "user", "content": "first"},
                        {"role": "assistant", "content": "reply"}, {"role": "user", "content": "last"}]) == "last"
    assert prompt_text([{"role": "user", "content": [{"type": "text", "text": "a"},
                                                     {"type": "image_url", "image_url": {"url": "x"}},
                                                     {"type": "text", "text": "b"}]}]) == "a\nb"
    assert prompt_text([{"role": "system", "content": "only"}]) == "only"
    assert prompt_text([]) == ""


def test_word_pairs_are_matched_as_the_vocabulary_spells_them() -> None:
    clf = Classifier.load()
    with np.load(io.BytesIO((artifact_dir() / "classifier.npz").read_bytes())) as npz:
        vocab = npz["vocab"].tobytes().split(b"\n")
    index = {term: i for i, term in enumerate(vocab)}
    bigrams_seen = 0
    for prompt in [*PROMPTS, "Which of the following statements is true of the United States?"]:
        words = extract(prompt)[1]
        expected = {index[t] for t in terms(words) if t in index}
        assert clf.term_ids(words) == expected
        bigrams_seen += sum(1 for i in expected if b" " in vocab[i])
    assert bigrams_seen >= 3  # the pairs were really looked up, not only the single words


def test_latency_measure_reports_every_number() -> None:
    from finops.routing.latency import measure

    m = measure(PROMPTS, repeats=2, cold_runs=0)  # a measurement for make bench / router-eval: no bounds here
    assert m["prompts"] == len(PROMPTS)
    for name in ("score", "route"):
        assert 0 < m[f"{name}_us_best_p50"] <= m[f"{name}_us_best_p99"] <= m[f"{name}_us_max"]
        assert m[f"{name}_us_p50"] <= m[f"{name}_us_p99"] <= m[f"{name}_us_max"]
    assert m["artifact_bytes"] == (artifact_dir() / "classifier.npz").stat().st_size


def test_latency_rounds_report_the_median_and_every_round() -> None:
    from finops.routing.latency import measure_rounds

    m = measure_rounds(PROMPTS, rounds=3, repeats=1, cold_runs=0)
    for name in ("score_us_p99", "score_us_best_p99", "route_us_p99", "cpu_ref_us"):
        assert len(m[f"{name}_rounds"]) == 3
        assert m[name] == sorted(m[f"{name}_rounds"])[1]  # the median round
    assert m["prompts"] == len(PROMPTS)


def test_answer_options_are_found_on_every_line_including_the_first() -> None:
    def option_features(text: str) -> dict[str, float]:
        dense = dict(zip(DENSE_NAMES, extract(text)[0], strict=True))
        return {k: round(dense[k], 6) for k in ("log_option_len", "numeric_options", "log_stem_len", "stem_share")}



    # the first line is an option: the stem is empty
    assert option_features("A. one\nB) 22\n(C) three") == {
        "log_option_len": round(math.log1p((3 + 2 + 5) / 3), 6), "numeric_options": round(1 / 3, 6),
        "log_stem_len": 0.0, "stem_share": 0.0}
    stem = "Which is prime?"
    got = option_features(f"{stem}\nA. 4\nB. 9\nC. 7\nD. 1\nnot an option: E.g. this")
    assert got["log_stem_len"] == round(math.log1p(len(stem) + 1), 6)  # the stem and its line break
    assert got["numeric_options"] == 1.0
    assert math.isnan(extract("No options here.\nAnd a second line.")[0][DENSE_NAMES.index("stem_share")])
