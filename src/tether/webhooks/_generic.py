"""A configurable HMAC scheme for senders with their own conventions.

Most bespoke senders differ only in a few choices: the header, the hash, hex or base64, a
prefix such as "sha256=", whether a timestamp (and an id) is signed and how the signed text is
laid out. The template names the layout with `{body}`, `{timestamp}` and `{id}`; `{{` and `}}`
are literal braces. The body is spliced in as bytes, never decoded.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason
from tether.webhooks._base import Incoming, Outgoing
from tether.webhooks._codec import digest, first_match, from_base64, from_hex, to_base64
from tether.webhooks._options import Options
from tether.webhooks._result import VerifiedWebhook, verified
from tether.webhooks._secrets import hmac_keys, one_key
from tether.webhooks._time import parse_timestamp

__all__ = ["HmacScheme"]

_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
_ENCODINGS = ("hex", "base64")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2 token


class _Field(enum.Enum):
    BODY = "body"
    TIMESTAMP = "timestamp"
    ID = "id"


Template = tuple[str | _Field, ...]


def _parse_template(template: str) -> Template:
    parts: list[str | _Field] = []
    position = 0
    for match in _TOKEN.finditer(template):
        if match.start() > position:
            parts.append(template[position : match.start()])
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif match.group(1) in {field.value for field in _Field}:
            parts.append(_Field(match.group(1)))
        else:
            raise ConfigError(
                "hmac option template= may only use {body}, {timestamp} and {id}; "
                "write {{ and }} for literal braces"
            )
        position = match.end()
    parts.append(template[position:])
    if parts.count(_Field.BODY) != 1:
        raise ConfigError("hmac option template= must contain {body} exactly once")
    return tuple(part for part in parts if part != "")


def _header_name(options: Options, name: str) -> str | None:
    value = options.optional_text(name)
    if value is not None and _HEADER_NAME.fullmatch(value) is None:
        raise ConfigError(f"hmac option {name}= is not a valid header name")
    return value


@dataclass(frozen=True, slots=True)
class HmacScheme:
    """A generic HMAC signature in one header, optionally with a signed timestamp and id."""

    header: str
    algorithm: str
    encoding: str
    prefix: str
    template: Template
    timestamp_header: str | None
    id_header: str | None
    separator: str | None

    @classmethod
    def from_options(cls, options: Options) -> HmacScheme:
        header = _header_name(options, "header")
        if header is None:
            raise ConfigError("the hmac scheme needs header=, the header carrying the signature")
        algorithm = options.choice("algorithm", "sha256", tuple(_SIZES))
        encoding = options.choice("encoding", "hex", _ENCODINGS)
        prefix = options.text("prefix", "")
        template = _parse_template(options.text("template", "{body}"))
        timestamp_header = _header_name(options, "timestamp_header")
        id_header = _header_name(options, "id_header")
        separator = options.raw("separator")
        if separator is not None and (not isinstance(separator, str) or not separator):
            raise ConfigError("hmac option separator= must be a str such as ',' or ' '")
        signs_timestamp = _Field.TIMESTAMP in template
        if signs_timestamp != (timestamp_header is not None):
            # A timestamp that is not signed proves nothing: checking its age would give a
            # false sense of replay protection, so the two options only come together.
            raise ConfigError(
                "hmac options timestamp_header= and {timestamp} in template= go together"
            )
        if _Field.ID in template and id_header is None:
            raise ConfigError("hmac option template= uses {id}, so id_header= is needed")
        names = [n.lower() for n in (header, timestamp_header, id_header) if n is not None]
        if len(set(names)) != len(names):
            raise ConfigError("hmac options header=, timestamp_header= and id_header= must differ")
        return cls(
            header,
            algorithm,
            encoding,
            prefix,
            template,
            timestamp_header,
            id_header,
            separator if isinstance(separator, str) else None,
        )

    def _content(self, body: bytes, timestamp: str | None, msg_id: str | None) -> bytes:
        chunks: list[bytes] = []
        for part in self.template:
            if part is _Field.BODY:
                chunks.append(body)
            elif part is _Field.TIMESTAMP:
                chunks.append((timestamp or "").encode("ascii"))
            elif part is _Field.ID:
                chunks.append((msg_id or "").encode("utf-8", "surrogatepass"))
            else:
                chunks.append(part.encode("utf-8"))
        return b"".join(chunks)

    def _decode(self, text: str) -> bytes | None:
        size = _SIZES[self.algorithm]
        return from_hex(text, size) if self.encoding == "hex" else from_base64(text, size)

    def _encode(self, raw: bytes) -> str:
        return raw.hex() if self.encoding == "hex" else to_base64(raw)

    def verify(self, incoming: Incoming) -> VerifiedWebhook:
        keys = hmac_keys(incoming.secrets)
        headers = incoming.headers
        value = headers.require(self.header)
        raw_timestamp: str | None = None
        timestamp: int | None = None
        if self.timestamp_header is not None:
            raw_timestamp = headers.require(self.timestamp_header)
            timestamp = parse_timestamp(raw_timestamp, f"the {self.timestamp_header} header")
        msg_id: str | None = None
        if self.id_header is not None:
            signs_id = _Field.ID in self.template
            msg_id = headers.require(self.id_header) if signs_id else headers.get(self.id_header)
        entries = value.split(self.separator) if self.separator else [value]
        candidates: list[bytes] = []
        for entry in entries:
            text = entry.strip() if self.separator else entry
            if not text.startswith(self.prefix):
                continue
            signature = self._decode(text.removeprefix(self.prefix))
            if signature is not None:
                candidates.append(signature)
        if not candidates and self.separator is None:
            raise WebhookVerificationError(
                WebhookVerificationReason.MALFORMED_HEADER,
                f"the {self.header} header is not {self.prefix}<{self.encoding} "
                f"{self.algorithm} HMAC>",
            )
        content = self._content(incoming.body, raw_timestamp, msg_id)
        index = first_match(keys, content, candidates, self.algorithm)
        if index is None:
            raise WebhookVerificationError(
                WebhookVerificationReason.NO_MATCHING_SIGNATURE,
                f"no signature in the {self.header} header matches "
                f"any of the {len(keys)} given secret(s)",
            )
        if timestamp is not None:
            # After the signature, so a stale timestamp is only reported for an authentic one.
            incoming.freshness.check(timestamp)
        return verified("hmac", index, timestamp, msg_id)

    def sign(self, outgoing: Outgoing) -> dict[str, str]:
        keys = hmac_keys(outgoing.secrets)
        if self.separator is None:
            keys = (one_key(keys, "hmac (without separator=)"),)
        if _Field.ID in self.template and outgoing.msg_id is None:
            raise ConfigError("this hmac template signs {id}, so sign() needs msg_id=")
        timestamp = str(outgoing.timestamp) if self.timestamp_header is not None else None
        content = self._content(outgoing.body, timestamp, outgoing.msg_id)
        signatures = [self.prefix + self._encode(digest(k, content, self.algorithm)) for k in keys]
        headers = {self.header: (self.separator or "").join(signatures)}
        if self.timestamp_header is not None and timestamp is not None:
            headers[self.timestamp_header] = timestamp
        if self.id_header is not None and outgoing.msg_id is not None:
            headers[self.id_header] = outgoing.msg_id
        return headers
