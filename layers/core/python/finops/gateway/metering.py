"""What a streamed answer has produced so far, in tokens: the running estimate the budget check reads
mid-stream, and the usage billed when the stream ends (the provider's if it finished and reported it,
otherwise tiktoken's count of what was delivered)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import tokens
from ..pricing import Usage
from ..providers.base import StreamChunk


def delta_texts(body: dict[str, Any] | None) -> Iterator[str]:
    """The generated text in a chunk: content and tool-call arguments of every choice."""
    for choice in (body or {}).get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content"):
            yield str(delta["content"])
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            for part in (function.get("name"), function.get("arguments")):
                if part:
                    yield str(part)


class StreamMeter:
    def __init__(self, prompt_tokens: int, encoding: str) -> None:
        self.prompt_tokens = prompt_tokens
        self.encoding = encoding
        self.parts: list[str] = []
        self.reported: Usage | None = None
        # Sum of per-chunk counts: at least the count of the joined text (BPE merges across chunk
        # boundaries only lower it), so the budget check errs on the safe side.
        self.running_output = 0

    def add(self, chunk: StreamChunk) -> None:
        if chunk.usage is not None:
            self.reported = chunk.usage
        for text in delta_texts(chunk.body):
            self.parts.append(text)
            self.running_output += tokens.count_text(text, self.encoding)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def usage(self, finished: bool) -> tuple[Usage, str]:
        """(usage, source) to bill. A finished stream with the provider's usage bills that; otherwise the
        prompt as counted before the call (or as the provider reported it) and the delivered text."""
        if finished and self.reported is not None:
            return self.reported, "provider"
        produced = tokens.count_text(self.text, self.encoding)
        if self.reported is None:
            return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=produced), "estimated"
        return self.reported.model_copy(update={
            "prompt_tokens": self.reported.prompt_tokens or self.prompt_tokens,
            "completion_tokens": max(produced, self.reported.completion_tokens)}), "estimated"
