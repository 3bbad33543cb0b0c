"""Strict JSON for request bodies: everything that fails to be JSON a client, the gateway and the providers
can all agree on raises :class:`json.JSONDecodeError` (a 400), never something that escapes as a 5xx."""

from __future__ import annotations

import json
import math
import re
from typing import Any


def _no_constant(token: str) -> Any:
    raise json.JSONDecodeError(f"{token} is not valid JSON", token, 0)


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):  # 1e309 overflows to inf: not sendable as JSON either
        raise json.JSONDecodeError(f"number {token[:20]} is out of range", token, 0)
    return value


def loads(text: str | bytes) -> Any:
    """Strict JSON for request bodies (the resolvers' ``json_body_deserializer`` and the streaming function).

    Every way the text can fail to be JSON raises :class:`json.JSONDecodeError`, which Powertools turns into a
    validation error (a 400): not only syntax errors, but ``NaN``/``Infinity`` and numbers that overflow to
    infinity (not JSON, and unsendable upstream), unpaired surrogates (unencodable), integers past Python's digit
    limit (a plain ``ValueError``) and nesting past the recursion limit (``RecursionError``), which would
    otherwise escape the resolver or fail the provider call: an unhandled 5xx.
    """
    doc = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nesting too deep", doc, 0) from None
    except ValueError as exc:  # an integer with too many digits, undecodable bytes
        raise json.JSONDecodeError(str(exc), doc, 0) from None
    if _SURROGATE_ESCAPE.search(doc) and not _is_unicode(data):
        # "\ud800" alone decodes to a string no UTF-8 encoder accepts (I-JSON, RFC 7493 2.1, forbids it).
        raise json.JSONDecodeError("unpaired surrogate in a string", doc, 0)
    return data


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _is_unicode(data: Any) -> bool:
    """Every string (and key) in ``data`` encodes to UTF-8. Iterative: ``data`` may be deeply nested."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True
