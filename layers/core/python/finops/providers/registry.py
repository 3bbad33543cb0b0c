"""Provider name -> adapter class. A new provider is one file plus one line here.

Every adapter is built as ``cls(config: ProviderConfig, secret_max_age=...)``.
"""

from __future__ import annotations

from collections.abc import Callable

from .anthropic import AnthropicProvider
from .base import ChatProvider
from .bedrock import BedrockProvider
from .groq import GroqProvider
from .openai import OpenAIProvider

PROVIDERS: dict[str, Callable[..., ChatProvider]] = {
    OpenAIProvider.name: OpenAIProvider,
    GroqProvider.name: GroqProvider,
    AnthropicProvider.name: AnthropicProvider,
    BedrockProvider.name: BedrockProvider,
}
