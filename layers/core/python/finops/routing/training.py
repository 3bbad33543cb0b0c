"""Training the complexity classifier (scikit-learn at training time only; inference is ``model.py``).

Reproducible: subjects, folds and the validation split come from fixed seeds, the vocabulary is sorted
deterministically, the solver (lbfgs) is deterministic, and the artifact is written as a zip with fixed
timestamps so the same data and seed give the same bytes (and sha256).

Data discipline (see ``data.py``): only ``splits.json``'s ``train_subjects`` are read. They are split by
subject into a *fit* part (the model and its hyper-parameters, chosen by grouped cross-validation) and a
*validation* part (threshold calibration, never fitted on).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import data as rdata
from . import metrics
from .features import DENSE_NAMES, HEAD, OPTIONS_WINDOW, TAIL, extract
from .features import terms as term_list
from .model import ARTIFACT, FORMAT, Classifier, standardise

# Outcome classes: 2 * weak_correct + strong_correct
BOTH_WRONG, STRONG_ONLY, WEAK_ONLY, BOTH_RIGHT = 0, 1, 2, 3


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    validation_fraction: float = 0.2
    folds: int = 5
    min_df: int = 5
    max_terms: int = 20000
    c_grid: tuple[float, ...] = (0.3, 1.0)
    # (w_len, w_clf): how much z(log chars) and z(classifier gain) weigh in the score
    blend_grid: tuple[tuple[float, float], ...] = ((1, 0), (1, 0.25), (1, 0.5), (1, 1), (1, 1.5), (1, 2), (1, 3),
                                                   (1, 4), (0, 1))
    target_strong_share: float = 0.5
    max_iter: int = 3000


@dataclass
class Featurized:
    dense: np.ndarray
    terms: list[list[bytes]]
    log_chars: np.ndarray
    weak: np.ndarray
    strong: np.ndarray
    groups: np.ndarray
    prompts: list[str] = field(repr=False)

    @classmethod
    def of(cls, examples: Sequence[rdata.Example]) -> Featurized:
        dense, term_lists = [], []
        for e in examples:
            d, words = extract(e.prompt)
            dense.append(d)
            term_lists.append(term_list(words))
        return cls(np.asarray(dense, dtype=np.float64).reshape(len(examples), len(DENSE_NAMES)), term_lists,
                   np.log1p(np.array([len(e.prompt) for e in examples], dtype=np.float64)),
                   np.array([e.weak for e in examples]), np.array([e.strong for e in examples]),
                   np.array([e.group for e in examples]), [e.prompt for e in examples])

    def subset(self, idx: np.ndarray) -> Featurized:
        return Featurized(self.dense[idx], [self.terms[i] for i in idx], self.log_chars[idx], self.weak[idx],
                          self.strong[idx], self.groups[idx], [self.prompts[i] for i in idx])

    @property
    def outcome(self) -> np.ndarray:
        return (2 * self.weak + self.strong).astype(int)


def build_vocab(term_lists: Sequence[Sequence[bytes]], min_df: int, max_terms: int) -> list[bytes]:
    df: Counter[bytes] = Counter()
    for terms in term_lists:
        df.update(set(terms))
    kept = [t for t, c in df.items() if c >= min_df and b"\n" not in t]
    kept.sort(key=lambda t: (-df[t], t))
    return kept[:max_terms]


def term_matrix(term_lists: Sequence[Sequence[bytes]], vocab: Sequence[bytes]) -> Any:
    """Binary presence, each row L2-normalised (1/sqrt(#terms present)) -- as ``Classifier.logits``."""
    from scipy import sparse

    index = {t: i for i, t in enumerate(vocab)}
    rows, cols, vals = [], [], []
    for r, terms in enumerate(term_lists):
        ids = sorted({index[t] for t in terms if t in index})
        if ids:
            rows.extend([r] * len(ids))
            cols.extend(ids)
            vals.extend([1.0 / math.sqrt(len(ids))] * len(ids))
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(term_lists), len(vocab)))


def fit_lr(feats: Featurized, cfg: TrainConfig, c: float) -> dict[str, np.ndarray]:
    """Fit the 4-class logistic regression; returns the artifact arrays (float32, as shipped)."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    vocab = build_vocab(feats.terms, cfg.min_df, cfg.max_terms)
    mean = np.nan_to_num(np.nanmean(feats.dense, axis=0))
    scale = np.nan_to_num(np.nanstd(feats.dense, axis=0))
    scale[scale < 1e-9] = 1.0
    z = standardise(feats.dense, mean, 1.0 / scale)
    x = sparse.hstack([sparse.csr_matrix(z), term_matrix(feats.terms, vocab)]).tocsr()
    y = feats.outcome
    lr = LogisticRegression(C=c, max_iter=cfg.max_iter, tol=1e-6)
    lr.fit(x, y)
    classes = list(lr.classes_)
    coef = np.zeros((4, x.shape[1]))
    intercept = np.full(4, -30.0)  # an outcome never seen in training gets ~0 probability
    for k, cls in enumerate(classes):
        coef[cls] = lr.coef_[k] if len(classes) > 2 else (lr.coef_[0] if k == 1 else 0.0)
        intercept[cls] = lr.intercept_[k] if len(classes) > 2 else (lr.intercept_[0] if k == 1 else 0.0)
    n_dense = len(DENSE_NAMES)
    return {
        "dense_mean": mean.astype(np.float32),
        "dense_scale": scale.astype(np.float32),
        "coef_dense": coef[:, :n_dense].astype(np.float32),
        "coef_terms": np.ascontiguousarray(coef[:, n_dense:].T).astype(np.float32),
        "intercept": intercept.astype(np.float32),
        "vocab": np.frombuffer(b"\n".join(vocab), dtype=np.uint8),
    }


_NEUTRAL_BLEND = {"w_len": 0.0, "w_clf": 1.0, "len_mean": 0.0, "len_std": 1.0, "clf_mean": 0.0, "clf_std": 1.0}


def _classifier(arrays: dict[str, np.ndarray], blend: dict[str, float] | None = None) -> Classifier:
    meta = {"gain_classes": [STRONG_ONLY, WEAK_ONLY], "blend": blend or _NEUTRAL_BLEND,
            "dense_names": list(DENSE_NAMES)}
    return Classifier(arrays, meta)


def gains(clf: Classifier, prompts: Sequence[str]) -> np.ndarray:
    return np.array([clf.gain(p) for p in prompts])


def grouped_folds(groups: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Subjects shuffled (seeded) and dealt round-robin into ``folds`` folds; returns each fold's row indices."""
    subjects = sorted(set(groups.tolist()))
    rng = np.random.default_rng(seed)
    order = [subjects[i] for i in rng.permutation(len(subjects))]
    fold_of = {s: i % folds for i, s in enumerate(order)}
    f = np.array([fold_of[g] for g in groups])
    return [np.flatnonzero(f == k) for k in range(min(folds, len(subjects)))]


def blended(log_chars: np.ndarray, gain: np.ndarray, w_len: float, w_clf: float,
            stats: dict[str, float]) -> np.ndarray:
    """The pre-sigmoid score of ``model.Blend`` (same ranking), vectorised."""
    return (w_len * (log_chars - stats["len_mean"]) / stats["len_std"]
            + w_clf * (gain - stats["clf_mean"]) / stats["clf_std"])


def cross_validate(fit: Featurized, cfg: TrainConfig, log: Any = print) -> dict[str, Any]:
    """Grouped (by subject) CV on the fit subjects: pick C and the length/classifier blend by pooled OOF APGR."""
    folds = grouped_folds(fit.groups, cfg.folds, cfg.seed)
    results: dict[str, Any] = {"folds": [sorted(set(fit.groups[f].tolist())) for f in folds], "grid": []}
    best: tuple[float, float, tuple[float, float], dict[str, float]] | None = None
    for c in cfg.c_grid:
        oof = np.zeros(len(fit.prompts))
        for k, test in enumerate(folds):
            train = np.setdiff1d(np.arange(len(fit.prompts)), test)
            clf = _classifier(fit_lr(fit.subset(train), cfg, c))
            oof[test] = gains(clf, [fit.prompts[i] for i in test])
            log(f"  C={c} fold {k + 1}/{len(folds)} done")
        stats = {"len_mean": float(fit.log_chars.mean()), "len_std": float(fit.log_chars.std()),
                 "clf_mean": float(oof.mean()), "clf_std": float(oof.std() or 1.0)}
        for w_len, w_clf in cfg.blend_grid:
            score = blended(fit.log_chars, oof, w_len, w_clf, stats)
            a = metrics.apgr(metrics.curve(score, fit.weak, fit.strong))
            results["grid"].append({"C": c, "w_len": w_len, "w_clf": w_clf, "oof_apgr": round(a, 5)})
            log(f"  C={c} w_len={w_len:g} w_clf={w_clf:g}: OOF APGR {a:.4f}")
            if best is None or a > best[0] + 1e-12:
                best = (a, c, (w_len, w_clf), stats)
    assert best is not None
    results.update({"best_oof_apgr": round(best[0], 5), "C": best[1], "w_len": best[2][0], "w_clf": best[2][1],
                    "stats": best[3]})
    return results


def calibration_grid(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> list[dict[str, float]]:
    """For strong-call shares 0, 1, ..., 100 %: the threshold on these scores, and the quality / share of the
    quality gap recovered (PGR) it gives on this (validation) data."""
    gap = float(strong.mean() - weak.mean())
    grid = []
    for pct in range(101):
        t = metrics.threshold_for_share(scores, pct / 100)
        share, quality = metrics.realised(scores, weak, strong, t)
        grid.append({"target_share": pct / 100, "threshold": t if math.isfinite(t) else (2.0 if t > 0 else -1.0),
                     "share": round(share, 5), "quality": round(quality, 5),
                     "pgr": round((quality - weak.mean()) / gap, 5) if gap else 0.0})
    return grid


def train(root: Path, cfg: TrainConfig = TrainConfig(), *, subjects: Sequence[str] | None = None,
          log: Any = print) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train on ``train_subjects`` (or a subset of them, for tests) and calibrate on the validation subjects."""
    splits = rdata.load_splits(root)
    if subjects is not None:
        unknown = set(subjects) - set(splits.train_subjects)
        if unknown:
            raise ValueError(f"not training subjects: {sorted(unknown)}")
        splits = rdata.Splits(tuple(subjects), splits.heldout_subjects)
    fit_subjects, val_subjects = rdata.split_train_validation(splits, cfg.seed, cfg.validation_fraction)
    drop = rdata.contaminated_prompts(root)
    fit = Featurized.of(rdata.load_mmlu(root, fit_subjects, drop))
    val = Featurized.of(rdata.load_mmlu(root, val_subjects, drop))
    log(f"fit: {len(fit.prompts)} prompts / {len(fit_subjects)} subjects; "
        f"validation: {len(val.prompts)} prompts / {len(val_subjects)} subjects")
    cv = cross_validate(fit, cfg, log)
    arrays = fit_lr(fit, cfg, cv["C"])
    blend = {"w_len": float(cv["w_len"]), "w_clf": float(cv["w_clf"]), **cv["stats"]}
    clf = _classifier(arrays, blend)
    val_scores = np.array([clf.score(p) for p in val.prompts])
    grid = calibration_grid(val_scores, val.weak, val.strong)
    threshold = metrics.threshold_for_share(val_scores, cfg.target_strong_share)
    val_curve = metrics.curve(val_scores, val.weak, val.strong)
    len_curve = metrics.curve(val.log_chars, val.weak, val.strong)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "model": "4-class logistic regression (both wrong / strong only / weak only / both right) on structural "
                 "features + binary L2-normalised word uni/bigrams; score = sigmoid(w_len z(log chars) + "
                 "w_clf z(P(strong only) - P(weak only)))",
        "gain_classes": [STRONG_ONLY, WEAK_ONLY],
        "dense_names": list(DENSE_NAMES),
        "window": {"head": HEAD, "tail": TAIL, "options": OPTIONS_WINDOW},
        "blend": blend,
        "n_terms": int(arrays["coef_terms"].shape[0]),
        "training": {
            "data": "RouteLLM MMLU responses (Mixtral-8x7B-Instruct = weak, GPT-4-1106-preview = strong), "
                    "decontaminated",
            "seed": cfg.seed, "config": {k: (list(v) if isinstance(v, tuple) else v)
                                         for k, v in cfg.__dict__.items()},
            "fit_subjects": list(fit_subjects), "validation_subjects": list(val_subjects),
            "n_fit": len(fit.prompts), "n_validation": len(val.prompts),
            "cv": cv,
        },
        "validation": {"apgr": round(metrics.apgr(val_curve), 5),
                       "length_only_apgr": round(metrics.apgr(len_curve), 5),
                       "cpt50": round(metrics.cpt(val_curve, 0.5), 3), "cpt80": round(metrics.cpt(val_curve, 0.8), 3)},
        "calibration": {"target_strong_share": cfg.target_strong_share, "threshold": threshold, "grid": grid},
    }
    log(f"validation APGR {meta['validation']['apgr']:.4f} (length only {meta['validation']['length_only_apgr']:.4f}); "
        f"threshold for {cfg.target_strong_share:.0%} strong calls: {threshold:.4f}")
    return arrays, meta


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic .npz (fixed member order and timestamps, deflated)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def save(arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path, name: str = ARTIFACT) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    blob = npz_bytes(arrays)
    digest = hashlib.sha256(blob).hexdigest()
    (directory / f"{name}.npz").write_bytes(blob)
    meta = {**meta, "sha256": digest, "bytes": len(blob)}
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
    return digest
