"""A streamed answer, relayed as the provider produces it and billed for what it produced.

The session owns the call from its first chunk to settlement:

- every chunk is metered as it passes (tiktoken per delta), and a stream without ``max_tokens`` extends its
  budget reservation block by block; a refused extension ends the stream there (``finish_reason: length``,
  with a ``finops`` note) unless the policy says ``allow``;
- the provider's usage is asked for (``include_usage``) and billed when the stream finishes; when it is
  missing, or the stream is cut short by the client or the provider, the prompt and the delivered text are
  counted with tiktoken;
- whatever ends the stream (done, client gone, provider error, budget stop, crash), ``finally`` writes the
  ledger row and settles the reservation and its extensions in the same write; a response closed before its
  first event (the client went away before the first byte) is settled by :class:`SessionEvents`; if metering
  fails, the call is booked at what was reserved for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from ..budgets.governor import extension_id
from ..errors import FinOpsError, InternalError, ProviderError, RateLimited
from ..pricing import PER_TOKENS, Usage
from ..providers.base import StreamChunk
from .metering import StreamMeter
from .sse import DONE
from .sse import event as sse

if TYPE_CHECKING:
    from ..budgets.governor import Ticket
    from .service import Call, ChatGateway, Done

logger = Logger(child=True)
EXTEND_AT = Decimal("0.9")  # extend the reservation when the output reaches 90% of what is reserved


@dataclass
class StreamingResponse:
    status: int
    headers: dict[str, str]
    chunks: Iterator[bytes]
    content_type: str = "text/event-stream"


STOP_MESSAGES = {
    "stopped_budget": "The stream was stopped at the budget's hard limit.",
    "stopped_unmetered": "The stream was stopped: the budget store could not be reached to extend its reservation.",
}


@dataclass
class StreamSession:
    gateway: ChatGateway
    call: Call
    done: Done
    reserved_tokens: int  # output tokens the reservations cover so far
    extendable: bool  # no max_tokens: the reservation grows with the answer
    tickets: list[Ticket] = field(default_factory=list)
    status: str = "ok"
    error_code: str | None = None
    settled: bool = False

    def __post_init__(self) -> None:
        self.tickets = [self.done.ticket]
        price = self.done.attempt.price
        self.meter = StreamMeter(self.done.prompt_tokens, price.encoding)
        self.block = self.gateway.settings.stream.reserve_tokens

    def events(self) -> Iterator[bytes]:
        chunks, first = self.done.result
        relayed = _prepend(first, chunks)
        finished = False
        template: dict[str, Any] = {}
        try:
            for chunk in relayed:
                self.meter.add(chunk)
                body = chunk.body
                if body is not None and not template:
                    template = {k: body.get(k) for k in ("id", "object", "created", "model", "system_fingerprint")}
                if body is not None and body.get("choices"):
                    yield sse(body)
                refusal = self._extension_refused() if self.extendable else None
                if refusal is not None:
                    yield sse({**template, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                               "finops": {"stopped": refusal[1], "message": STOP_MESSAGES[refusal[0]]}})
                    self.status, self.error_code = refusal
                    break
            else:
                finished = True
            if self._include_usage():
                usage, _ = self.meter.usage(finished)
                yield sse({**template, "choices": [], "usage": usage.as_openai()})
            yield DONE
        except GeneratorExit:  # the client went away: stop reading (and paying for) the provider's stream
            self.status, self.error_code = "client_disconnected", "client_disconnected"
            raise
        except ProviderError as exc:
            self.status, self.error_code = "provider_interrupted", exc.code
            logger.warning("provider stream interrupted", extra={"code": exc.code})
            yield sse(exc.envelope())
            yield DONE
        except Exception:
            logger.exception("stream crashed")
            error = InternalError("The gateway failed while streaming.")
            self.status, self.error_code = "internal_error", error.code
            yield sse(error.envelope())
        finally:
            try:
                _close(relayed)  # closes the provider's stream it is reading from
                _close(chunks)  # (if it never started)
            finally:
                self._settle(finished)

    def abandon(self) -> None:
        """The response was dropped before its first event: let go of the provider, settle what was delivered
        (nothing)."""
        if self.settled:
            return
        self.status, self.error_code = "client_disconnected", "client_disconnected"
        chunks, _ = self.done.result
        try:
            _close(chunks)
        finally:
            self._settle(False)

    def _include_usage(self) -> bool:
        options = self.call.request.stream_options
        return bool(options and options.include_usage)

    def _extension_refused(self) -> tuple[str, str] | None:
        """Extend the reservation when the answer nears it. ``(status, error code)`` when the stream must stop:
        the budget refused the extension, or the budget store could not be asked (fail-closed)."""
        if self.meter.running_output < self.reserved_tokens * EXTEND_AT:
            return None
        price = self.done.attempt.price
        cost = price.output * self.block * self.call.request.n / PER_TOKENS
        request_id = extension_id(self.done.request_id, len(self.tickets))
        try:
            ticket = self.gateway.governor.admit(
                request_id, self.call.key, self.call.tags, price.model, cost, None,
                reservation=self.gateway.reservation_payload(self.call, price, self.done.started), budgets_only=True)
        except RateLimited:
            if self.gateway.settings.stream.on_budget_exhausted == "allow":
                self.extendable = False  # finish; settlement charges the overrun
                return None
            return "stopped_budget", "budget_exceeded"
        except FinOpsError as exc:  # budget store down and fail-closed: stop rather than stream unmetered
            return "stopped_unmetered", exc.code
        self.tickets.append(ticket)
        self.reserved_tokens += self.block
        return None

    def _settle(self, finished: bool) -> None:
        if self.settled:
            return
        self.settled = True
        entry = self.gateway.metered_entry(
            self.call, self.done, lambda: self.meter.usage(finished), self.tickets, status=self.status,
            error_code=self.error_code,
            known=Usage(prompt_tokens=self.done.prompt_tokens, completion_tokens=self.meter.running_output))
        self.gateway.settle(self.tickets, entry, succeeded=True)  # never raises: a row it cannot write is spilled


class SessionEvents:
    """A session's SSE events, as the transport reads them. Closing it settles the call even if it was never
    read: a generator closed before its first ``next`` runs no ``finally``, so the client going away before
    the first byte would otherwise leave the reservation, the provider's stream and the ledger row behind."""

    def __init__(self, session: StreamSession) -> None:
        self.session = session
        self._events = session.events()
        self._started = False

    def __iter__(self) -> SessionEvents:
        return self

    def __next__(self) -> bytes:
        self._started = True
        return next(self._events)

    def close(self) -> None:
        if not self._started:
            self._started = True
            self.session.abandon()
        self._events.close()


def _close(chunks: Any) -> None:
    """Let go of the provider's stream; a failure to close it must not stop settlement."""
    close = getattr(chunks, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        logger.warning("could not close the provider's stream", exc_info=True)


def _prepend(first: StreamChunk, rest: Iterator[StreamChunk]) -> Iterator[StreamChunk]:
    yield first
    yield from rest
