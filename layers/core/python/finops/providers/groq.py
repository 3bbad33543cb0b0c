"""Groq's OpenAI-compatible endpoint (api.groq.com/openai/v1).

Groq rejects a few OpenAI parameters (https://console.groq.com/docs/openai); they are dropped. Streamed usage
arrives in the standard ``usage`` field of the last chunk or, from API versions that predate
``stream_options``, in ``x_groq.usage`` of the chunk that carries the ``finish_reason``; both are read.
"""

from __future__ import annotations

from typing import Any

from ..pricing import Usage
from .openai_compatible import OpenAICompatibleProvider, parse_usage


class GroqProvider(OpenAICompatibleProvider):
    name = "groq"
    unsupported_fields = frozenset({"logprobs", "top_logprobs", "logit_bias"})

    def usage_of(self, body: dict[str, Any]) -> Usage | None:
        usage = parse_usage(body.get("usage"))
        if usage is None:
            x_groq = body.get("x_groq")
            usage = parse_usage(x_groq.get("usage")) if isinstance(x_groq, dict) else None
        return usage
