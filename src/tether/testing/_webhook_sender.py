"""A webhook sender for testing receivers: it signs, duplicates, reorders and replays.

Real providers deliver at least once, out of order, and sometimes resend a delivery long after
the fact. A receiver is only right if it verifies every signature, deduplicates by delivery id
and rejects stale timestamps; this sender produces exactly those situations, from a seed, on the
clock you give it (a `FakeClock` makes "ten minutes later" instant).
"""

from __future__ import annotations

import json as jsonlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from multidict import CIMultiDict

from tether._clock import Clock, SystemClock
from tether._errors import ConfigError, RequestError
from tether._models import Request
from tether.transports._aiohttp import AiohttpTransport
from tether.transports._base import AsyncTransport
from tether.webhooks import Secrets, sign

__all__ = ["Delivery", "WebhookSender"]

DeliveryKind = Literal["original", "duplicate", "replay"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST the sender made, and how the receiver answered."""

    msg_id: str
    timestamp: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    kind: DeliveryKind
    #: The receiver's status, or None when the request failed below HTTP.
    status: int | None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    """Sends signed webhooks to `url` with `tether.webhooks.sign(scheme, ...)`.

    Args:
        url: The receiver's endpoint.
        scheme: Any scheme `tether.webhooks.sign` knows ("standard", "stripe", "github", ...).
        secret: The signing secret (or several, for schemes that sign with each).
        clock: Where timestamps come from; share the receiver's `FakeClock` in tests.
        seed: Seeds delivery ids, duplicate choices and reordering.
        transport: How to send (default: a new `AiohttpTransport`, closed with the sender);
            pass a `MockAPI` transport to deliver in-process.
        headers: Extra headers on every delivery.
        **sign_options: The scheme's own options, passed to `sign` (e.g. url= for "twilio").
    """

    def __init__(
        self,
        url: str,
        *,
        scheme: str = "standard",
        secret: Secrets,
        clock: Clock | None = None,
        seed: int | str = 0,
        transport: AsyncTransport | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        **sign_options: object,
    ) -> None:
        self.url = url
        self.scheme = scheme
        self._secret = secret
        self._options = sign_options
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._random = random.Random(f"{seed}/webhooks")
        self._transport = transport
        self._owns_transport = transport is None
        self._headers = dict(headers or {})
        self._timeout = timeout
        #: Every delivery made, in order.
        self.deliveries: list[Delivery] = []
        # Sign once up front: a bad scheme or secret fails here, not at the first send.
        sign(scheme, secret=secret, body=b"{}", msg_id="msg_check", timestamp=0, **sign_options)

    def _new_id(self) -> str:
        return f"msg_{self._random.getrandbits(96):024x}"

    @staticmethod
    def _encode(payload: Any) -> bytes:
        if isinstance(payload, bytes):
            return payload
        return jsonlib.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    async def _post(
        self,
        body: bytes,
        headers: Mapping[str, str],
        msg_id: str,
        timestamp: int,
        kind: DeliveryKind,
    ) -> Delivery:
        transport = self._transport
        if transport is None:
            transport = self._transport = AiohttpTransport()
        merged: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
        merged.update(self._headers)
        merged.update(headers)
        request = Request("POST", self.url, headers=merged, content=body)
        request.timeout = self._timeout
        request.connect_timeout = self._timeout
        status: int | None = None
        error: str | None = None
        try:
            response = await transport.send(request)
            status = response.status
        except RequestError as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = Delivery(msg_id, timestamp, body, tuple(merged.items()), kind, status, error)
        self.deliveries.append(delivery)
        return delivery

    async def send(
        self, payload: Any, *, msg_id: str | None = None, timestamp: int | None = None
    ) -> Delivery:
        """Sign and deliver one event (a JSON-serializable value, or the exact body bytes)."""
        body = self._encode(payload)
        msg_id = msg_id or self._new_id()
        when = int(self.clock.time()) if timestamp is None else timestamp
        headers = sign(
            self.scheme,
            secret=self._secret,
            body=body,
            msg_id=msg_id,
            timestamp=when,
            **self._options,
        )
        return await self._post(body, headers, msg_id, when, "original")

    async def duplicate(self, delivery: Delivery) -> Delivery:
        """Deliver the same event again, freshly signed, as providers retry: same id and body."""
        when = int(self.clock.time())
        headers = sign(
            self.scheme,
            secret=self._secret,
            body=delivery.body,
            msg_id=delivery.msg_id,
            timestamp=when,
            **self._options,
        )
        return await self._post(delivery.body, headers, delivery.msg_id, when, "duplicate")

    async def replay(self, delivery: Delivery) -> Delivery:
        """Resend a past delivery byte for byte, old signature and timestamp included, as an
        attacker who captured it would. A receiver should refuse it once it is stale.
        """
        headers = {k: v for k, v in delivery.headers if k.lower() != "content-type"}
        return await self._post(
            delivery.body, headers, delivery.msg_id, delivery.timestamp, "replay"
        )

    async def send_all(
        self,
        events: Iterable[Any],
        *,
        duplicates: float = 0.0,
        reorder: bool = False,
    ) -> list[Delivery]:
        """Deliver `events` as an at-least-once provider would.

        Args:
            duplicates: The chance (0..1) that each event is delivered a second time, later in
                the run; drawn from the seeded generator.
            reorder: Shuffle the deliveries (seeded), so events arrive out of order.
        """
        number: object = duplicates
        if isinstance(number, bool) or not isinstance(number, int | float) or not 0 <= number <= 1:
            raise ConfigError(f"duplicates must be a probability within 0..1, got {duplicates!r}")
        planned: list[tuple[Any, str]] = []
        for payload in events:
            msg_id = self._new_id()
            planned.append((payload, msg_id))
            if self._random.random() < duplicates:
                planned.append((payload, msg_id))
        if reorder:
            self._random.shuffle(planned)
        sent: list[Delivery] = []
        first: dict[str, Delivery] = {}
        # After shuffling, whichever copy comes first is the original.
        for payload, msg_id in planned:
            if msg_id in first:
                sent.append(await self.duplicate(first[msg_id]))
                continue
            delivery = await self.send(payload, msg_id=msg_id)
            first[msg_id] = delivery
            sent.append(delivery)
        return sent

    async def aclose(self) -> None:
        if self._owns_transport and self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<WebhookSender {self.scheme} -> {self.url} deliveries={len(self.deliveries)}>"
