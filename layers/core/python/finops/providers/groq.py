"""Groq's OpenAI-compatible endpoint (api.groq.com/openai/v1).

Groq rejects a few OpenAI parameters (https://console.groq.com/docs/openai); they are dropped.
"""

from __future__ import annotations

from .openai_compatible import OpenAICompatibleProvider


class GroqProvider(OpenAICompatibleProvider):
    name = "groq"
    unsupported_fields = frozenset({"logprobs", "top_logprobs", "logit_bias"})
