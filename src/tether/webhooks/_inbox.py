"""The receiver: an ASGI app that verifies, stores durably, and only then acknowledges.

For each request to a source's path, in this order:

1. POST only (405), a body within the size limit (413), a content type the source accepts (415);
2. the signature and timestamp verify (401, with no detail: the reason goes to the log);
3. the raw body, headers and verification result are committed to the inbox store, fsync'd,
   unique on (source, event id) (503 if the store cannot);
4. 200, also for a duplicate, which is not stored or dispatched again.

Handlers never run in the request: the dispatcher runs them from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tether._clock import Clock, SystemClock
from tether._errors import ConfigError, WebhookVerificationError
from tether._redact import REDACTED, SENSITIVE_HEADERS
from tether.stores import InboxStore, NewEvent, StoreError, open_inbox_store
from tether.stores._inbox import MAX_EVENT_ID, new_event
from tether.webhooks._api import SCHEMES, prepare_verifier, verify
from tether.webhooks._delivery import (
    Extractor,
    ReceivedWebhook,
    body_sha256,
    compile_extractor,
    default_extractors,
    lazy_delivery,
)
from tether.webhooks._dispatch import Dispatcher, DispatchPolicy, HandlerFunc, Handlers
from tether.webhooks._headers import HeaderView
from tether.webhooks._secrets import Secrets, unwrap_secrets

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import Route

__all__ = ["DEFAULT_MAX_BODY_SIZE", "Inbox", "Source"]

logger = logging.getLogger("tether.webhooks.inbox")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
F = TypeVar("F", bound=HandlerFunc)

#: 1 MiB. Stripe, Shopify and Standard Webhooks senders stay far below it; GitHub caps its
#: payloads at 25 MB, so raise it for a GitHub source that receives large pushes.
DEFAULT_MAX_BODY_SIZE = 1024 * 1024

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_JSON = ("application/json",)
_FORM = "application/x-www-form-urlencoded"
# What each provider sends. GitHub and Slack can also send form-encoded bodies (a GitHub
# webhook's "content type" setting; Slack's slash commands and interactivity).
_DEFAULT_CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "github": ("application/json", _FORM),
    "slack": ("application/json", _FORM),
    "twilio": (_FORM, "application/json"),
}
_ANY = "*/*"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """One sender of webhooks: where it posts, how it signs, how its events are identified.

    Args:
        name: a short name, e.g. "stripe"; events and handlers are keyed by it.
        path: the route, e.g. "/webhooks/stripe".
        scheme: the signature scheme, one of `webhooks.SCHEMES`.
        secrets: the signing secret, or several during a rotation.
        tolerance: seconds a signed timestamp may be off; None turns the check off.
        id_from: where the event id is; by default the scheme's delivery id (Stripe: the body's
            "id", Slack: "event_id"). With none found, the SHA-256 of the body is used.
        type_from: where the event type is; by default where the provider puts it.
        content_types: media types accepted (415 otherwise); None means the scheme's usual
            ones, ("*/*",) accepts any.
        max_body_size: bytes accepted (413 beyond); None means the inbox's limit.
        options: the scheme's own verify() options, e.g. {"url": ...} for "twilio".
    """

    name: str
    path: str
    scheme: str
    secrets: Secrets = field(repr=False)
    _: KW_ONLY
    tolerance: float | None = 300
    id_from: str | Extractor | None = None
    type_from: str | Extractor | None = None
    content_types: tuple[str, ...] | None = None
    max_body_size: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        name: object = self.name  # checked at run time too: configuration files carry any type
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(
                f"source name {self.name!r} must be 1-64 letters, digits, '_', '.' or '-'"
            )
        path: object = self.path
        if not isinstance(path, str) or not path.startswith("/") or " " in path:
            raise ConfigError(f"source {self.name!r}: path must start with '/', not {self.path!r}")
        if self.scheme not in SCHEMES:
            raise ConfigError(
                f"source {self.name!r}: unknown scheme {self.scheme!r}; "
                f"known schemes: {', '.join(SCHEMES)}"
            )
        unwrap_secrets(self.secrets)
        tolerance: object = self.tolerance
        if tolerance is not None and (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int | float)
            or not math.isfinite(tolerance)
            or tolerance < 0
        ):
            raise ConfigError(f"source {self.name!r}: tolerance must be >= 0 seconds or None")
        if self.max_body_size is not None and not _positive_int(self.max_body_size):
            raise ConfigError(f"source {self.name!r}: max_body_size must be a positive int")
        if self.content_types is not None:
            types = tuple(t.strip().lower() for t in self.content_types)
            if not types or not all(types):
                raise ConfigError(f"source {self.name!r}: content_types may not be empty")
            object.__setattr__(self, "content_types", types)
        object.__setattr__(self, "options", dict(self.options))
        for what, spec in (("id_from", self.id_from), ("type_from", self.type_from)):
            if spec is not None:
                compile_extractor(spec, what)
        self._check_options()

    def _check_options(self) -> None:
        # An unknown or missing scheme option is a configuration mistake: find it now, not
        # on the first delivery. A verification failure here is expected (no headers).
        with contextlib.suppress(WebhookVerificationError):
            verify(
                self.scheme,
                secret=self.secrets,
                headers={},
                body=b"",
                tolerance=self.tolerance,
                **self.options,
            )

    @property
    def accepted_types(self) -> tuple[str, ...]:
        if self.content_types is not None:
            return self.content_types
        return _DEFAULT_CONTENT_TYPES.get(self.scheme, _JSON)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _media_type(raw: str) -> str:
    return raw.split(";", 1)[0].strip().lower()


# Header names repeat from one delivery to the next; their decoded, lower-cased forms are kept
# (bounded, since a sender chooses the names) so that only the values are decoded per request.
_NAMES: dict[bytes, tuple[str, str, bool]] = {}
_MAX_NAMES = 512


def _header_name(raw: bytes) -> tuple[str, str, bool]:
    name = raw.decode("latin-1")
    key = name.lower()
    known = (name, key, key in SENSITIVE_HEADERS)
    if len(_NAMES) < _MAX_NAMES:
        _NAMES[raw] = known
    return known


def _decode_headers(
    raw: Iterable[tuple[bytes, bytes]],
) -> tuple[HeaderView, tuple[tuple[str, str], ...]]:
    """One pass over the ASGI headers: the lookup view, and the copy to store.

    The stored copy keeps every header in order, for audit and re-verification, except the
    credentials a proxy or sender added.
    """
    # fold() written out in the loop: the first value of each name, and every value of the few
    # names sent more than once.
    first: dict[str, str] = {}
    repeats: dict[str, list[str]] | None = None
    stored: list[tuple[str, str]] = []
    for name_bytes, value_bytes in raw:
        name, key, secret = _NAMES.get(name_bytes) or _header_name(name_bytes)
        value = value_bytes.decode("latin-1")
        if key in first:
            if repeats is None:
                repeats = {}
            repeats.setdefault(key, [first[key]]).append(value)
        else:
            first[key] = value
        stored.append((name, REDACTED if secret else value))
    return HeaderView.of_folded(first, repeats), tuple(stored)


def _clean_id(found: str | None, delivery: ReceivedWebhook) -> str:
    if found is None or not found.strip():
        return body_sha256(delivery)
    if len(found) > MAX_EVENT_ID or _CONTROL.search(found):
        # Still stable for redeliveries of the same event, and safe to store and print.
        return "sha256:" + hashlib.sha256(found.encode("utf-8", "replace")).hexdigest()
    return found


def _clean_type(found: str | None) -> str | None:
    if found is None or not found.strip():
        return None
    return _CONTROL.sub("", found)[:MAX_EVENT_ID] or None


async def _respond(
    send: Send,
    status: int,
    body: bytes = b"",
    *,
    content_type: bytes = b"application/json",
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", content_type))
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_ACCEPTED = b'{"status":"accepted"}'
_DUPLICATE = b'{"status":"duplicate"}'
# The two answers almost every delivery gets, their headers spelled once. Each response still
# gets its own list and messages: middleware may change them in place.
_ACCEPTED_HEADERS = (
    (b"content-length", str(len(_ACCEPTED)).encode()),
    (b"content-type", b"application/json"),
)
_DUPLICATE_HEADERS = (
    (b"content-length", str(len(_DUPLICATE)).encode()),
    (b"content-type", b"application/json"),
)
_TOO_LARGE = b'{"error":"payload too large"}'
_UNSUPPORTED = b'{"error":"unsupported content type"}'
_BAD_LENGTH = b'{"error":"invalid content-length"}'
_UNAVAILABLE = b'{"error":"temporarily unavailable"}'
_NOT_ALLOWED = b'{"error":"method not allowed"}'


class _Receiver:
    """The ASGI endpoint of one source."""

    __slots__ = (
        "_accepted",
        "_any_type",
        "_headers_type",
        "_id_from",
        "_inbox",
        "_limit",
        "_type_from",
        "_verify",
        "source",
    )

    def __init__(self, inbox: Inbox, source: Source, headers_type: Any) -> None:
        self._inbox = inbox
        self.source = source
        self._limit = source.max_body_size or inbox.max_body_size
        default_id, default_type = default_extractors(source.scheme)
        self._id_from = (
            default_id if source.id_from is None else compile_extractor(source.id_from, "id_from")
        )
        self._type_from = (
            default_type
            if source.type_from is None
            else compile_extractor(source.type_from, "type_from")
        )
        self._headers_type = headers_type
        self._accepted = source.accepted_types
        self._any_type = _ANY in self._accepted
        # The scheme, its options and the secrets are checked once, not per delivery.
        self._verify = prepare_verifier(
            source.scheme, secret=source.secrets, tolerance=source.tolerance, **source.options
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _respond(send, 405, _NOT_ALLOWED, extra=[(b"allow", b"POST")])
            return
        headers, stored = _decode_headers(scope["headers"])
        declared = headers.first("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _respond(send, 400, _BAD_LENGTH)
                return
            if int(declared) > self._limit:
                await _respond(send, 413, _TOO_LARGE)
                return
        media = _media_type(headers.first("content-type") or "")
        if not self._any_type and media not in self._accepted:
            await _respond(send, 415, _UNSUPPORTED)
            return
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            # The whole body in one message, as servers hand over a small one.
            body: bytes | None = message.get("body", b"")
            if body is not None and len(body) > self._limit:
                body = None
        else:
            try:
                body = await self._read(receive, message)
            except _Disconnected:
                return  # the client went away before its body arrived: there is nobody to answer
        del message
        if body is None:
            await _respond(send, 413, _TOO_LARGE)
            return
        checked = self._check(scope, headers, stored, body, media)
        # Only the event waits for the commit. What checking it took (the header view, the
        # parsed body, the verification result) is freed first: a request held across a commit
        # keeps everything it references alive, and hundreds of such objects per commit kept
        # the cyclic garbage collector running on every few requests.
        del headers, stored, body
        if not isinstance(checked, NewEvent):
            status, content, content_type = checked
            await _respond(send, status, content, content_type=content_type)
            return
        inbox = self._inbox
        try:
            if inbox.started:
                # Inbox.admit without its coroutine: one frame fewer held per delivery.
                row_id = await inbox.store.add(checked)
                if row_id is not None and inbox.dispatcher is not None:
                    inbox.dispatcher.wake()
            else:
                row_id = await inbox.admit(checked)
        except StoreError as exc:
            # Not acknowledged, so the sender retries: nothing is lost. The message is complete;
            # a traceback would add nothing.
            logger.error("could not store a %s webhook: %s", self.source.name, exc)  # noqa: TRY400
            await _respond(send, 503, _UNAVAILABLE, extra=[(b"retry-after", b"5")])
            return
        if row_id is None:
            answer, answer_headers = _DUPLICATE, _DUPLICATE_HEADERS
        else:
            answer, answer_headers = _ACCEPTED, _ACCEPTED_HEADERS
        await send({"type": "http.response.start", "status": 200, "headers": list(answer_headers)})
        await send({"type": "http.response.body", "body": answer})

    def _check(
        self,
        scope: Scope,
        headers: HeaderView,
        stored: tuple[tuple[str, str], ...],
        body: bytes,
        media: str,
    ) -> NewEvent | tuple[int, bytes, bytes]:
        """The event to store, or the (status, body, content type) to answer instead."""
        inbox = self._inbox
        source = self.source
        # One clock read: the time verified against is the time the delivery was received.
        now = inbox.clock.time()
        try:
            verified = self._verify(headers, body, now)
        except WebhookVerificationError as exc:
            # The sender learns nothing about why; the operator does.
            logger.warning("rejected a %s webhook: %s", source.name, exc.reason.value)
            return 401, b"", b""
        headers_type = self._headers_type
        delivery = lazy_delivery(
            source=source.name,
            headers=lambda: headers_type(scope=scope),
            body=body,
            content_type=media,
            verified=verified,
        )
        if source.scheme == "slack" and (challenge := _slack_challenge(delivery)) is not None:
            return 200, challenge, b"text/plain"
        return new_event(
            source=source.name,
            event_id=_clean_id(self._extract(self._id_from, delivery, "id_from"), delivery),
            event_type=_clean_type(self._extract(self._type_from, delivery, "type_from")),
            received_at=now,
            headers=stored,
            body=body,
            scheme=verified.scheme,
            secret_index=verified.secret_index,
            signed_at=verified.timestamp,
            msg_id=verified.msg_id,
        )

    def _extract(
        self, extractor: Extractor | None, delivery: ReceivedWebhook, what: str
    ) -> str | None:
        if extractor is None:
            return None
        try:
            found = extractor(delivery)
        except Exception:
            # A bug in a user's extractor must not turn an authentic delivery away (the sender
            # would retry it forever): the id falls back to the body's hash, the type to none.
            logger.exception("%s of source %s failed; using the fallback", what, self.source.name)
            return None
        return found if isinstance(found, str) else None

    async def _read(self, receive: Receive, message: Message) -> bytes | None:
        """The body from `message` on, or None when it outgrows the limit (a chunked body has
        no length)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            message = await receive()


def _slack_challenge(delivery: ReceivedWebhook) -> bytes | None:
    # Slack checks a new Events API URL with a signed url_verification request, which must be
    # answered with its challenge; it is a handshake, not an event to store.
    payload = delivery.json()
    if not isinstance(payload, dict) or payload.get("type") != "url_verification":
        return None
    challenge = payload.get("challenge")
    return challenge.encode() if isinstance(challenge, str) else None


class _Disconnected(Exception):
    """The client went away before its body arrived; there is nothing to answer."""


class Inbox:
    """Receives webhooks from configured sources, stores them durably, dispatches them.

        inbox = webhooks.Inbox(
            [webhooks.Source("stripe", "/stripe", "stripe", secrets=STRIPE_SECRET)],
            store="tether.db",
        )

        @inbox.handler("stripe", "invoice.paid")
        async def paid(event: webhooks.InboxEvent) -> None: ...

        app = inbox.app            # uvicorn module:app, or mount it in FastAPI/Starlette

    Args:
        sources: the senders to accept, each on its own path.
        store: an `InboxStore`, or a path / URL for `stores.open_inbox_store`.
        max_body_size: bytes accepted per delivery unless a source says otherwise.
        dispatch: run a dispatcher inside the app; False when workers elsewhere dispatch.
        policy: the dispatcher's retry, lease and retention settings.
        clock: the time source, for verification, receipt times and retries.
    """

    def __init__(
        self,
        sources: Iterable[Source],
        *,
        store: InboxStore | str | os.PathLike[str] = "tether.db",
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        dispatch: bool = True,
        policy: DispatchPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.sources = tuple(sources)
        if not self.sources:
            raise ConfigError("an Inbox needs at least one Source")
        for kind in ("name", "path"):
            seen: set[str] = set()
            for source in self.sources:
                if not isinstance(source, Source):
                    raise ConfigError(
                        f"sources must be webhooks.Source, not {type(source).__name__}"
                    )
                value = getattr(source, kind)
                if value in seen:
                    raise ConfigError(f"two sources share the {kind} {value!r}")
                seen.add(value)
        if not _positive_int(max_body_size):
            raise ConfigError("max_body_size must be a positive int")
        self.max_body_size = max_body_size
        self.store: InboxStore = store if isinstance(store, InboxStore) else open_inbox_store(store)
        self.clock: Clock = clock or SystemClock()
        self.handlers = Handlers(source.name for source in self.sources)
        self.dispatcher: Dispatcher | None = (
            Dispatcher(self.store, self.handlers, policy=policy, clock=self.clock)
            if dispatch
            else None
        )
        self._app: Starlette | None = None
        self._routes: list[Route] | None = None
        self._started = False
        self._starting = asyncio.Lock()

    def __repr__(self) -> str:
        names = ", ".join(source.name for source in self.sources)
        return f"Inbox(sources=[{names}], store={self.store!r})"

    def handler(
        self, source: str, event_type: str = "*", *, name: str | None = None
    ) -> Callable[[F], F]:
        """Register the decorated function (sync or async) for `source` events of `event_type`.

        The function receives the stored `InboxEvent`; returning means success, raising means
        the attempt failed and will be retried. It may run more than once for one event (at
        least once), so make it idempotent, e.g. keyed on `event.event_id`.
        """
        return self.handlers.on(source, event_type, name=name)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the store is open (and the dispatcher, if any, running)."""
        return self._started

    async def start(self) -> None:
        """Open the store and start the dispatcher; done on first request if nobody did."""
        if self._started:
            return
        async with self._starting:
            if self._started:
                return
            await self.store.open()
            if self.dispatcher is not None:
                await self.dispatcher.start()
            self._started = True

    async def stop(self) -> None:
        """Stop the dispatcher and close the store, committing what was queued."""
        if not self._started:
            return
        self._started = False
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.store.close()

    async def __aenter__(self) -> Inbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """A Starlette/FastAPI lifespan: `FastAPI(lifespan=inbox.lifespan)`."""
        del app
        async with self:
            yield

    async def admit(self, event: NewEvent) -> int | None:
        """Store a verified event durably; its row id, or None for a duplicate."""
        if not self._started:
            await self.start()
        row_id = await self.store.add(event)
        if row_id is not None and self.dispatcher is not None:
            self.dispatcher.wake()
        return row_id

    # -- the ASGI app ----------------------------------------------------------------------------

    @property
    def routes(self) -> list[Route]:
        """One Starlette route per source, to add to an app of your own without a Mount.

        Run this inbox's lifespan (or `async with inbox:`) in that app's lifespan too; without
        it the store opens on the first delivery and the dispatcher starts then.
        """
        if self._routes is None:
            try:
                from starlette.datastructures import Headers  # noqa: PLC0415 - optional
                from starlette.routing import Route  # noqa: PLC0415 - optional
            except ImportError:
                raise ConfigError(
                    "the webhook inbox needs starlette: pip install 'tether[server]'"
                ) from None
            self._routes = [
                Route(source.path, _Receiver(self, source, Headers)) for source in self.sources
            ]
        return list(self._routes)

    @property
    def app(self) -> Starlette:
        """The Starlette app: one POST route per source, plus this inbox's lifespan."""
        if self._app is None:
            routes = self.routes
            from starlette.applications import Starlette  # noqa: PLC0415 - optional

            self._app = Starlette(routes=routes, lifespan=self.lifespan)
        return self._app
