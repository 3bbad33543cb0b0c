"""The shipped complexity classifier: load (hash-verified), then score prompts with numpy only.

Artifact (``finops/data/router/``): ``classifier.npz`` (weights + vocabulary) and ``classifier.json``
(metadata: the npz's sha256, training provenance, the score blend, the validation calibration grid). The
loader refuses an npz whose sha256 differs from the metadata's.

Model: a 4-class logistic regression over (weak correct, strong correct) outcomes -- both wrong, only the
strong model right, only the weak model right, both right -- on dense structural features plus binary,
L2-normalised word uni/bigram features. Its score is ``P(only strong right) - P(only weak right)``, the expected
quality gain of calling the strong model, blended with log prompt length (z-scored, weights picked by
grouped cross-validation over the training subjects) and squashed to [0, 1].
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from .features import DENSE_NAMES, extract

ARTIFACT = "classifier"
FORMAT = "finops-router-classifier/1"
CLIP = 3.0  # standardised dense features are clipped to +-CLIP: prompts unlike the training data stay in range


def standardise(x: np.ndarray, mean: np.ndarray, inv_scale: np.ndarray) -> np.ndarray:
    """``(x - mean) / scale``, missing (NaN) -> 0 (the training mean), clipped to +-CLIP. Rows or one vector."""
    z = (x - mean) * inv_scale
    np.copyto(z, 0.0, where=z != z)  # NaN -> 0; np.nan_to_num / np.clip cost ~10 us more per prompt
    return np.minimum(np.maximum(z, -CLIP, out=z), CLIP, out=z)


class ArtifactError(RuntimeError):
    """The classifier artifact is missing, corrupt or does not match its recorded hash."""


def artifact_dir() -> Path:
    return Path(str(importlib.resources.files("finops") / "data" / "router"))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Blend:
    """``score = sigmoid(w_len * z(log chars) + w_clf * z(gain))``, z-scored with training statistics."""

    w_len: float
    w_clf: float
    len_mean: float
    len_std: float
    clf_mean: float
    clf_std: float

    def combine(self, log_chars: float, gain: float) -> float:
        x = (self.w_len * (log_chars - self.len_mean) / self.len_std
             + self.w_clf * (gain - self.clf_mean) / self.clf_std)
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


class Classifier:
    """Inference only. ``score(text)`` in [0, 1]: predicted need for the strong model."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.meta = meta
        vocab_blob = arrays["vocab"].tobytes()
        terms = vocab_blob.split(b"\n") if vocab_blob else []
        # Unigrams by word, bigrams by (word, word): a prompt's pairs are matched as the tuples pairwise()
        # yields, without joining each pair into a new bytes object (a third of a long prompt's scoring time).
        # Built with C-level maps (a Python loop over the 20,000 terms would add ~7 ms to every load); each dict
        # also holds the other kind's keys, which a word (no space) or a pair (a 2-tuple) can never equal.
        split = list(map(bytes.split, terms))
        if split and (min(map(len, split)) < 1 or max(map(len, split)) > 2):
            raise ArtifactError("a vocabulary term is neither one word nor two")
        self._unigrams: dict[bytes, int] = dict(zip(terms, range(len(terms)), strict=True))
        self._bigrams: dict[tuple[bytes, ...], int] = dict(zip(map(tuple, split), range(len(terms)), strict=True))
        self._mean = arrays["dense_mean"].astype(np.float64)
        self._inv_scale = 1.0 / arrays["dense_scale"].astype(np.float64)
        self._w_dense = arrays["coef_dense"].astype(np.float64).T.copy()  # (n_dense, classes), standardised inputs
        self._bias = arrays["intercept"].astype(np.float64)
        self._w_terms = arrays["coef_terms"].astype(np.float64)  # (n_terms, classes)
        self._gain_classes = (int(meta["gain_classes"][0]), int(meta["gain_classes"][1]))
        self.blend = Blend(**meta["blend"])
        if list(meta["dense_names"]) != list(DENSE_NAMES):
            raise ArtifactError("the artifact was trained on other dense features than this code computes")
        if self._w_dense.shape[0] != len(meta["dense_names"]) or self._w_terms.shape[0] != len(terms):
            raise ArtifactError("classifier arrays do not match their metadata")

    # --- inference -------------------------------------------------------------------------------------

    def logits(self, text: str) -> np.ndarray:
        dense, words = extract(text)
        z = self._bias + standardise(np.asarray(dense), self._mean, self._inv_scale) @ self._w_dense
        ids = self.term_ids(words)
        if ids:
            rows = np.fromiter(ids, np.intp, len(ids))
            z = z + self._w_terms.take(rows, axis=0).sum(axis=0) / math.sqrt(len(ids))
        return z

    def term_ids(self, words: list[bytes]) -> set[int]:
        """The vocabulary ids of ``features.terms(words)``: the words, and the neighbouring pairs."""
        ids = set(map(self._unigrams.get, words))
        ids.update(map(self._bigrams.get, pairwise(words)))
        ids.discard(None)
        return ids  # type: ignore[return-value]  # None was discarded

    def gain(self, text: str) -> float:
        """P(only the strong model is right) - P(only the weak one is right), in [-1, 1]."""
        z = self.logits(text).tolist()
        top = max(z)
        p = [math.exp(v - top) for v in z]
        strong_only, weak_only = self._gain_classes
        return (p[strong_only] - p[weak_only]) / sum(p)

    def score(self, text: str) -> float:
        return self.blend.combine(math.log1p(len(text)), self.gain(text))

    # --- loading ---------------------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path | None = None, name: str = ARTIFACT) -> Classifier:
        directory = artifact_dir() if directory is None else Path(directory)
        meta_path, npz_path = directory / f"{name}.json", directory / f"{name}.npz"
        try:
            meta = json.loads(meta_path.read_text())
            blob = npz_path.read_bytes()
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read the router artifact in {directory}: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise ArtifactError(f"unknown artifact format {meta.get('format')!r}")
        digest = hashlib.sha256(blob).hexdigest()
        if digest != meta.get("sha256"):
            raise ArtifactError(f"{npz_path.name}: sha256 {digest} does not match the recorded {meta.get('sha256')}")
        import io

        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return cls(arrays, meta)


_DEFAULT: Classifier | None = None


def default_classifier() -> Classifier:
    """The shipped classifier, loaded once per process (on first use, never at import)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Classifier.load()
    return _DEFAULT
