"""Data discipline (decontamination, splits) and reproducible training, on a tiny synthetic data set."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from finops.routing import data as rdata
from finops.routing import training
from finops.routing.model import ArtifactError, Classifier

TRAIN = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")  # as conftest.tiny_root writes them
HELDOUT = ("omega", "psi")
CONTAMINATED = "Which planet is the leaked one?\nA. Mars\nB. Venus\nC. Earth\nD. Jupiter\nAnswer:"

TINY = training.TrainConfig(seed=0, validation_fraction=1 / 3, folds=2, min_df=2, max_terms=300, c_grid=(1.0,),
                            blend_grid=((1, 0), (1, 1), (0, 1)), max_iter=500)


def test_contaminated_prompts_are_dropped(tiny_root: Path) -> None:
    drop = rdata.contaminated_prompts(tiny_root)
    assert rdata._norm(CONTAMINATED) in drop
    beta = rdata.load_mmlu(tiny_root, ["beta"])
    assert len(beta) == 40
    assert all(rdata._norm(e.prompt) != rdata._norm(CONTAMINATED) for e in beta)
    # and the same file read without the drop list does contain it (the test can fail)
    assert any(e.prompt == CONTAMINATED for e in rdata.load_mmlu(tiny_root, ["beta"], drop=frozenset()))


def test_shared_data_is_decontaminated(shared_root: Path) -> None:
    drop = rdata.contaminated_prompts(shared_root)
    assert len(drop) >= 20
    splits = rdata.load_splits(shared_root)
    everything = (rdata.load_mmlu(shared_root, splits.train_subjects + splits.heldout_subjects)
                  + rdata.load_gsm8k(shared_root) + rdata.load_mt_bench(shared_root))
    assert not {rdata._norm(e.prompt) for e in everything} & drop
    assert len(rdata.load_mt_bench(shared_root)) == 72


def test_validation_is_carved_from_train_subjects_only(tiny_root: Path) -> None:
    splits = rdata.load_splits(tiny_root)
    fit, val = rdata.split_train_validation(splits, seed=0, validation_fraction=1 / 3)
    assert set(fit) | set(val) == set(TRAIN)
    assert not set(fit) & set(val)
    assert not (set(fit) | set(val)) & set(HELDOUT)
    assert len(val) == 2
    assert (fit, val) == rdata.split_train_validation(splits, seed=0, validation_fraction=1 / 3)


def test_splits_refuse_overlap() -> None:
    with pytest.raises(ValueError, match="both in train and held-out"):
        rdata.Splits(("a", "b"), ("b",)).check()


def test_training_never_reads_held_out_subjects(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = rdata.load_mmlu

    def spy(root: Path, subjects: tuple[str, ...] | list[str], drop: frozenset[str] | None = None) -> list:
        seen.extend(subjects)
        return real(root, subjects, drop)

    monkeypatch.setattr(rdata, "load_mmlu", spy)
    _, meta = training.train(tiny_root, TINY, log=lambda *_: None)
    assert set(seen) == set(TRAIN)
    assert set(meta["training"]["fit_subjects"]) | set(meta["training"]["validation_subjects"]) == set(TRAIN)
    with pytest.raises(ValueError, match="not training subjects"):
        training.train(tiny_root, TINY, subjects=["alpha", "omega"], log=lambda *_: None)


def test_retraining_is_reproducible(tiny_root: Path, tmp_path: Path) -> None:
    a_arrays, a_meta = training.train(tiny_root, TINY, log=lambda *_: None)
    b_arrays, b_meta = training.train(tiny_root, TINY, log=lambda *_: None)
    assert sorted(a_arrays) == sorted(b_arrays)
    for name in a_arrays:
        assert np.array_equal(a_arrays[name], b_arrays[name]), name
    assert training.npz_bytes(a_arrays) == training.npz_bytes(b_arrays)
    digest = training.save(a_arrays, a_meta, tmp_path / "a")
    assert digest == training.save(b_arrays, b_meta, tmp_path / "b")
    assert (tmp_path / "a" / "classifier.npz").read_bytes() == (tmp_path / "b" / "classifier.npz").read_bytes()
    # another seed deals other validation subjects -> other weights
    c_arrays, _ = training.train(tiny_root, dataclasses.replace(TINY, seed=5), log=lambda *_: None)
    assert not all(np.array_equal(a_arrays[k], c_arrays[k]) for k in a_arrays)


def test_saved_artifact_round_trips_and_hash_is_checked(tiny_root: Path, tmp_path: Path) -> None:
    arrays, meta = training.train(tiny_root, TINY, log=lambda *_: None)
    digest = training.save(arrays, meta, tmp_path)
    assert digest == hashlib.sha256((tmp_path / "classifier.npz").read_bytes()).hexdigest()
    clf = Classifier.load(tmp_path)
    prompts = [e.prompt for e in rdata.load_mmlu(tiny_root, ["alpha"])][:5]
    scores = [clf.score(p) for p in prompts]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == [Classifier.load(tmp_path).score(p) for p in prompts]
    # the batch path used in training and the per-prompt inference path agree
    gains = training.gains(training._classifier(arrays), prompts)
    assert gains.tolist() == pytest.approx([clf.gain(p) for p in prompts])
    # tampering with the weights is caught
    blob = bytearray((tmp_path / "classifier.npz").read_bytes())
    blob[-100] ^= 0xFF
    (tmp_path / "classifier.npz").write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="sha256"):
        Classifier.load(tmp_path)
    meta_path = tmp_path / "classifier.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "format": "other/9"}))
    with pytest.raises(ArtifactError, match="format"):
        Classifier.load(tmp_path)
