"""Provider name -> adapter class. A new provider is one file plus one line here."""

from __future__ import annotations

from .groq import GroqProvider
from .openai import OpenAIProvider
from .openai_compatible import OpenAICompatibleProvider

PROVIDERS: dict[str, type[OpenAICompatibleProvider]] = {
    OpenAIProvider.name: OpenAIProvider,
    GroqProvider.name: GroqProvider,
}
