"""A verified delivery, and how an event's id and type are read from it.

`id_from=` and `type_from=` on a `Source` take a callable `(ReceivedWebhook) -> str | None` or
one of these strings, which configuration files can carry too:

    "msg_id"            the id the scheme verified or reported (webhook-id, X-GitHub-Delivery, ...)
    "header:<Name>"     a request header
    "json:<a.b.c>"      a field of the JSON body; digits index into lists
    "body_sha256"       "sha256:" and the hex SHA-256 of the body
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pydantic_core import from_json

from tether._errors import ConfigError
from tether.webhooks._result import VerifiedWebhook

__all__ = ["Extractor", "ReceivedWebhook", "body_sha256", "compile_extractor", "default_extractors"]

_UNPARSED: Any = object()
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class ReceivedWebhook:
    """One received request that passed verification, as `id_from`/`type_from` see it."""

    __slots__ = ("_headers", "_json", "_make_headers", "body", "content_type", "source", "verified")

    def __init__(
        self,
        *,
        source: str,
        headers: Mapping[str, str],
        body: bytes,
        content_type: str,
        verified: VerifiedWebhook,
    ) -> None:
        self.source = source
        self._headers: Mapping[str, str] | None = headers
        self._make_headers: Callable[[], Mapping[str, str]] | None = None
        self.body = body
        #: The media type, lower-cased and without parameters, e.g. "application/json".
        self.content_type = content_type
        self.verified = verified
        self._json: Any = _UNPARSED

    @property
    def headers(self) -> Mapping[str, str]:
        """The request headers; lookups are case-insensitive."""
        headers = self._headers
        if headers is None:
            make = self._make_headers
            headers = self._headers = make() if make is not None else _NO_HEADERS
            self._make_headers = None
        return headers

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON; parsed at most once."""
        if self._json is _UNPARSED:
            body = self.body
            try:
                # RFC 8259 8.1: JSON is UTF-8. A body opening with an ASCII character and a
                # non-NUL byte has no BOM and cannot be UTF-16/32, which is all json.loads would
                # sniff the bytes for, so it is decoded here without the sniffing.
                if len(body) > 1 and 0 < body[0] < 0x80 and body[1]:
                    try:
                        # pydantic's parser (jiter) takes half the time of json's and gives the
                        # same values; what it refuses (lone surrogate escapes, nesting deeper
                        # than its limit) json decides, as before.
                        self._json = from_json(body)
                    except ValueError:
                        self._json = json.loads(body.decode("utf-8", "surrogatepass"))
                else:
                    self._json = json.loads(body)
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                # Not JSON; nor is a document nested too deep for json to parse.
                self._json = None
        return self._json

    def __repr__(self) -> str:
        return f"ReceivedWebhook(source={self.source!r}, bytes={len(self.body)})"


def lazy_delivery(
    *,
    source: str,
    headers: Callable[[], Mapping[str, str]],
    body: bytes,
    content_type: str,
    verified: VerifiedWebhook,
) -> ReceivedWebhook:
    """A `ReceivedWebhook` whose header mapping `headers()` makes if an extractor reads it.

    Most sources never read headers this way (their ids come from the verification), so the
    receiver does not build a framework's header object for every delivery.
    """
    # Not through __init__: this runs for every delivery, and keyword calls cost.
    delivery = ReceivedWebhook.__new__(ReceivedWebhook)
    delivery.source = source
    delivery._headers = None
    delivery._make_headers = headers
    delivery.body = body
    delivery.content_type = content_type
    delivery.verified = verified
    delivery._json = _UNPARSED
    return delivery


Extractor = Callable[[ReceivedWebhook], str | None]


def body_sha256(delivery: ReceivedWebhook) -> str:
    """The fallback event id: a hash of the exact body, so identical redeliveries match."""
    return "sha256:" + hashlib.sha256(delivery.body).hexdigest()


def _msg_id(delivery: ReceivedWebhook) -> str | None:
    return delivery.verified.msg_id


def _text(value: object) -> str | None:
    # Ids are strings or integers in every provider's JSON; objects and floats are not ids.
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)
    return None


def _json_path(path: str) -> Extractor:
    steps = path.split(".")
    if not path or any(not step for step in steps):
        raise ConfigError(f"json:{path} is not a dotted path such as json:data.object.id")

    def extract(delivery: ReceivedWebhook) -> str | None:
        value = delivery.json()
        for step in steps:
            if isinstance(value, dict):
                value = value.get(step)
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                return None
        return _text(value)

    return extract


def _header(name: str) -> Extractor:
    if not name or any(c in name for c in " :\r\n"):
        raise ConfigError(f"header:{name} is not a header name")

    def extract(delivery: ReceivedWebhook) -> str | None:
        return delivery.headers.get(name) or None

    return extract


def compile_extractor(spec: str | Extractor, what: str) -> Extractor:
    """`spec` as a callable; strings are parsed now, so a typo fails at configuration time.

    Raises:
        ConfigError: a string that is not one of the documented forms.
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"{what} must be a callable or a string, not {type(spec).__name__}")
    kind, _, argument = spec.partition(":")
    if spec == "msg_id":
        return _msg_id
    if spec == "body_sha256":
        return body_sha256
    if kind == "header" and argument:
        return _header(argument)
    if kind == "json" and argument:
        return _json_path(argument)
    raise ConfigError(
        f"{what}={spec!r} is not understood: use 'msg_id', 'body_sha256', "
        "'header:<Name>', 'json:<dotted.path>' or a callable"
    )


def _first(*extractors: Extractor) -> Extractor:
    def extract(delivery: ReceivedWebhook) -> str | None:
        for extractor in extractors:
            if (found := extractor(delivery)) is not None:
                return found
        return None

    return extract


# Where each provider puts its event's id and type. Stripe and Slack send no id header: the id
# is in the JSON body (Stripe's event "id", Slack's Events API "event_id").
_DEFAULT_IDS: dict[str, Extractor] = {
    "stripe": _json_path("id"),
    "slack": _json_path("event_id"),
}
_DEFAULT_TYPES: dict[str, Extractor | None] = {
    "standard": _json_path("type"),
    "stripe": _json_path("type"),
    "github": _header("X-GitHub-Event"),
    "slack": _first(_json_path("event.type"), _json_path("type")),
    "shopify": _header("X-Shopify-Topic"),
    "twilio": None,
    "hmac": _json_path("type"),
}


def default_extractors(scheme: str) -> tuple[Extractor, Extractor | None]:
    """The id and type extractors a source of `scheme` uses unless told otherwise."""
    return _DEFAULT_IDS.get(scheme, _msg_id), _DEFAULT_TYPES.get(scheme)
