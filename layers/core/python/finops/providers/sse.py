"""Server-sent events, parsed as the WHATWG HTML standard says (section "Parsing an event stream").

Small on purpose: lines in, events out, nothing buffered beyond the event being read, so a streamed answer
reaches the gateway as the provider sends it. Used over ``httpx.Response.iter_lines()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None


def iter_events(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events from decoded lines (without their line endings); comments and empty events are skipped.

    An event still open when the lines end is dispatched only if it has data (the standard drops it; providers
    that close the connection right after the last ``data:`` line would otherwise lose their last event).
    """
    event, data, last_id = "", [], None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event=event or "message", data="\n".join(data), id=last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            last_id = value
    if data:
        yield ServerSentEvent(event=event or "message", data="\n".join(data), id=last_id)
