"""The OpenAI chat-completions request as the gateway accepts it (pydantic, validated by Powertools).

Unknown top-level fields are allowed and forwarded (OpenAI adds parameters often); the fields the gateway
reasons about (model, messages, token limits, stream) are typed and bounded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_NAME = r"^[A-Za-z0-9._:/-]{1,128}$"


class ToolCall(BaseModel):
    """One of an assistant message's ``tool_calls``: an object whose ``function`` (if any) is an object too.
    Token counting reads ``function.name`` and ``function.arguments``; any other shape is a 400, not a crash."""

    model_config = ConfigDict(extra="allow")

    function: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = Field(default=None, max_length=64)
    tool_calls: list[ToolCall] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(pattern=MODEL_NAME)
    messages: list[ChatMessage] = Field(min_length=1, max_length=4096)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None

    @property
    def output_limit(self) -> int | None:
        """The caller's cap on generated tokens (``max_completion_tokens`` wins, as in OpenAI's API)."""
        return self.max_completion_tokens or self.max_tokens

    def provider_payload(self, model: str) -> dict[str, Any]:
        """The body to send upstream: the caller's request with the concrete model, never streamed here."""
        payload = self.model_dump(exclude_none=True, exclude_unset=True)
        payload["model"] = model
        payload["messages"] = [m.model_dump(exclude_none=True) for m in self.messages]
        payload.pop("stream", None)
        payload.pop("stream_options", None)
        return payload
