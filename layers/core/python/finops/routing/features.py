"""Prompt -> features for the complexity classifier; the same code runs at training and at inference.

One pass over a bounded window of the prompt (its first ``HEAD`` and last ``TAIL`` characters; the full
length and line count are still read), so the cost is bounded however long the prompt:

- ``dense``: lexical/structural numbers (length, digits, maths symbols, answer-option structure, question
  type...) that carry over to prompts unlike the training ones;
- ``words``: the lowercase words of the window, digit runs folded to ``#``. Their unigrams and bigrams
  (``terms``) are the sparse features; the classifier keeps only the terms of a vocabulary learnt from the
  training subjects.

Every step is a C-level string method or regex scan (no per-character Python loop). The window was cut from
1,500 to 750 characters for speed (docs/router.md, round 6): the classifier's cost grows with the words read,
and the training data's cross-validation scored both windows alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from itertools import pairwise
from operator import itemgetter
from typing import Any

HEAD = 450  # characters of the prompt's start that are read
TAIL = 300  # ... and of its end (where a question and its answer options usually are)
OPTIONS_WINDOW = 1500  # answer options are looked for in the last characters of the prompt

# One 256-byte table turns the UTF-8 window into words: ASCII letters lower-cased, digits -> '#', every other
# byte (punctuation, whitespace, any byte of a non-ASCII character) -> space. bytes.translate is a plain table
# lookup, fast whatever the text (str.translate is slow on non-ASCII strings).
_TABLE = bytes(
    (c + 32) if 65 <= c <= 90 else c if 97 <= c <= 122 else 35 if 48 <= c <= 57 else 32 for c in range(256)
)
_DIGIT_BYTES = b"0123456789"
_MATH_BYTES = b"=+*/^<>%$\\"
_MATH_UNICODE = "\u00d7\u00f7\u221a\u03c0\u2211\u222b\u2264\u2265\u00b1\u221e"  # times, divide, root, pi...
_CODE_BYTES = b"{};[]_"
_UPPER_BYTES = bytes(range(65, 91))
# For counting sentence ends: "?" reads as ".", a newline as a space, so ". " counts ". ", ".\n", "? " and "?\n".
_SENTENCE_TABLE = bytes(46 if c == 63 else 32 if c == 10 else c for c in range(256))
# An answer option: a line starting "A." / "(B)" ... The pattern starts with the newline before the line (the
# text searched gets one in front), so the regex engine jumps from newline to newline instead of trying every
# position, as a multi-line "^" makes it do (4x faster, same matches).
_OPTION = re.compile(r"\n\(?([A-J])[.)]\s*(.*)")
_HAS_DIGIT = re.compile(r"\d")
_CUES = ("write", "explain", "describe", "compose", "create", "draft", "design", "implement")

DENSE_NAMES: tuple[str, ...] = (
    "log_chars", "log_words", "digit_frac", "log_numbers", "log_math", "math_frac", "log_lines", "log_questions",
    "log_option_len", "option_len_spread", "numeric_options", "log_stem_len", "stem_share",
    "log_sentences", "mean_word_len", "upper_frac", "statement_pair", "roman_numerals", "negation",
    "which_following", "log_code_chars", "passage_cue", "imperative_cue",
)
# Features that only exist for a prompt with lettered answer options: NaN otherwise, read as "average" (the
# training mean) by the model, so a prompt without options is not pushed outside the training range.
OPTION_FEATURES = ("log_option_len", "option_len_spread", "numeric_options", "log_stem_len", "stem_share")
MISSING = float("nan")


def prompt_text(messages: Iterable[Mapping[str, Any]] | str) -> str:
    """The text the router reads: the last user message (a string or OpenAI text content parts), else the
    last message of any role."""
    if isinstance(messages, str):
        return messages
    chosen: Any = None
    for message in messages:
        if message.get("role") == "user" or chosen is None:
            chosen = message
    if chosen is None:
        return ""
    content = chosen.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content
                         if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def extract(text: str) -> tuple[list[float], list[bytes]]:
    """``(dense, words)`` for one prompt. Words: the ASCII words of the lower-cased window as bytes, digits as
    ``#`` and every other character a separator (``"3.5 m"`` -> ``# # m``)."""
    n = len(text)
    lines = text.count("\n")
    window = text if n <= HEAD + TAIL else text[:HEAD] + "\n" + text[-TAIL:]
    raw = window.encode("utf-8", "surrogatepass")
    m = len(raw)
    inv = 1.0 / max(m, 1)
    folded = raw.translate(_TABLE)
    toks = folded.split()
    n_tok = len(toks)
    numbers = folded.count(b" #") + folded.startswith(b"#") if b"#" in folded else 0
    digits = m - len(raw.translate(None, _DIGIT_BYTES)) if numbers else 0
    math_ = m - len(raw.translate(None, _MATH_BYTES))
    if not raw.isascii():
        math_ += sum(map(window.count, _MATH_UNICODE))
    upper = m - len(raw.translate(None, _UPPER_BYTES))
    alnum = m - folded.count(b" ")
    words = text.count(" ") + lines + 1 if n else 0

    found = list(_OPTION.finditer("\n" + text[-OPTIONS_WINDOW:])) if lines else []
    n_opt = len(found)
    if n_opt:
        options = list(map(itemgetter(2), found))
        lens = list(map(len, options))
        mean_opt = sum(lens) / n_opt
        spread = (max(lens) - min(lens)) / (mean_opt + 1.0)
        numeric = sum(map(bool, map(_HAS_DIGIT.search, options))) / n_opt
        stem = max(0, n - min(n, OPTIONS_WINDOW) + found[0].start())
        log_option_len, log_stem, stem_share = math.log1p(mean_opt), math.log1p(stem), stem / max(n, 1)
    else:
        log_option_len = spread = numeric = log_stem = stem_share = MISSING
    low = window[-TAIL:].lower()
    sentences = raw.translate(_SENTENCE_TABLE).count(b". ") + raw.count(b"! ")
    dense = [
        math.log1p(n),
        math.log1p(words),
        digits * inv,
        math.log1p(numbers),
        math.log1p(math_),
        math_ * inv,
        math.log1p(lines),
        math.log1p(raw.count(b"?")),
        log_option_len,
        spread,
        numeric,
        log_stem,
        stem_share,
        math.log1p(sentences),
        alnum / n_tok if n_tok else 0.0,
        upper / max(alnum, 1),
        1.0 if "statement 1" in low else 0.0,
        1.0 if ("i and ii" in low or (" ii" in low and " i " in low)) else 0.0,
        1.0 if (" not " in low or "except" in low) else 0.0,
        1.0 if "which of the following" in low else 0.0,
        math.log1p(m - len(raw.translate(None, _CODE_BYTES))),
        1.0 if ("passage" in low or b"refers to the following" in folded[:300]) else 0.0,
        1.0 if window.lstrip()[:12].lower().startswith(_CUES) else 0.0,
    ]
    return dense, toks


def terms(words: list[bytes]) -> list[bytes]:
    """The sparse features' terms as the vocabulary spells them: each word, then each pair of neighbouring
    words joined by a space. (At inference ``Classifier`` matches the pairs without joining them.)"""
    return words + list(map(b" ".join, pairwise(words)))


