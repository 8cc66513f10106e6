"""Cassettes: record tether traffic once, replay it in every later run, never leak a secret.

A `Cassette` is a transport that wraps another. Recording, it sends through the inner
transport and keeps a scrubbed copy of each exchange; replaying, it answers from the file and
never touches the network. Scrubbing is on by default and covers both directions: sensitive
headers (Authorization, Cookie, Set-Cookie, X-Api-Key, and whatever the client's credential
declared), sensitive query parameters, token fields in JSON and form bodies, and every secret
value the client's redactor knows. Writing then fails if any known secret still appears, in any
encoding we can decode (percent, JSON escapes, base64), so a cassette is safe to commit.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json as jsonlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

from multidict import CIMultiDict, CIMultiDictProxy

from tether._errors import ConfigError, TetherError
from tether._models import Request, Response
from tether._redact import REDACTED, SENSITIVE_HEADERS, SENSITIVE_PARAMS, Redactor
from tether._types import SecretLike, reveal
from tether.transports._aiohttp import AiohttpTransport
from tether.transports._base import AsyncTransport

__all__ = [
    "SENSITIVE_FIELDS",
    "Cassette",
    "CassetteError",
    "CassetteLeak",
    "CassetteMismatch",
    "CassetteMode",
    "cassette_name",
]

CassetteMode = Literal["once", "replay", "record", "append"]
_MODES: tuple[str, ...] = ("once", "replay", "record", "append")

#: JSON and form fields whose values are credentials, whatever API they come from.
SENSITIVE_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "client_secret",
        "client_assertion",
        "assertion",
        "password",
        "secret",
        "api_key",
        "apikey",
        "code_verifier",
        "device_code",
        "private_key",
    }
)

#: Headers that describe the stored body's transfer, not the body itself: replay recomputes.
_TRANSFER_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})

_FORMAT_VERSION = 1
_BASE64ISH = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


class CassetteError(TetherError):
    """A cassette cannot be used as asked (missing in replay-only mode, unreadable file)."""


class CassetteMismatch(CassetteError):
    """No recorded interaction matches a request; the message shows the nearest one."""


class CassetteLeak(CassetteError):
    """Writing would put a known secret on disk; nothing was written."""


def cassette_name(test_name: str) -> str:
    """A file name for a test: `test_x[a-1]` -> `test_x-a-1.json`."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name).strip("-.")
    return f"{cleaned or 'cassette'}.json"


def _in_ci(environ: Mapping[str, str]) -> bool:
    return environ.get("CI", "").strip().lower() in ("1", "true", "yes")


# -- scrubbing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scrubber:
    headers: frozenset[str]
    params: frozenset[str]
    fields: frozenset[str]
    redactor: Redactor

    def header_list(self, items: Iterable[tuple[str, str]]) -> list[list[str]]:
        return [
            [name, REDACTED if name.lower() in self.headers else self.redactor.text(value)]
            for name, value in items
        ]

    def query(self, pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
        return [
            [name, REDACTED if name.lower() in self.params else self.redactor.text(value)]
            for name, value in pairs
        ]

    def json_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: REDACTED
                if isinstance(key, str) and key.lower() in self.fields and item is not None
                else self.json_value(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.json_value(item) for item in value]
        if isinstance(value, str):
            return self.redactor.text(value)
        return value

    def body(self, content: bytes, content_type: str) -> dict[str, Any] | None:
        if not content:
            return None
        media = content_type.split(";", maxsplit=1)[0].strip().lower()
        if media == "application/json" or media.endswith("+json"):
            with contextlib.suppress(ValueError):
                return {"json": self.json_value(jsonlib.loads(content))}
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            # Binary bodies stay base64; the leak check decodes them again before writing.
            return {"base64": base64.b64encode(content).decode()}
        if media == "application/x-www-form-urlencoded":
            pairs = parse_qsl(text, keep_blank_values=True)
            return {
                "form": [
                    [
                        k,
                        REDACTED
                        if k.lower() in self.fields | self.params
                        else self.redactor.text(v),
                    ]
                    for k, v in pairs
                ]
            }
        return {"text": self.redactor.text(text)}


def _body_bytes(body: Mapping[str, Any] | None) -> bytes:
    if not body:
        return b""
    if "json" in body:
        return jsonlib.dumps(body["json"], separators=(",", ":"), ensure_ascii=False).encode()
    if "form" in body:
        return urlencode([tuple(pair) for pair in body["form"]]).encode()
    if "text" in body:
        return str(body["text"]).encode()
    if "base64" in body:
        return base64.b64decode(body["base64"])
    return b""


def _split_url(
    url: str, params: Sequence[tuple[str, str]] | None
) -> tuple[str, list[tuple[str, str]]]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend(params or ())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), query


# -- matching -------------------------------------------------------------------------------


def _normal_body(body: Mapping[str, Any] | None) -> Any:
    if not body:
        return None
    if "form" in body:
        return ("form", sorted(tuple(pair) for pair in body["form"]))
    key = next(iter(body))
    return (key, body[key])


def _field_diff(
    recorded: Mapping[str, Any], actual: Mapping[str, Any], fields: Sequence[str]
) -> list[str]:
    lines: list[str] = []
    for name in fields:
        want, got = recorded.get(name), actual.get(name)
        if name == "query":
            want_set, got_set = sorted(map(tuple, want or [])), sorted(map(tuple, got or []))
            if want_set != got_set:
                missing = [f"{k}={v}" for k, v in want_set if (k, v) not in got_set]
                extra = [f"{k}={v}" for k, v in got_set if (k, v) not in want_set]
                lines.append(
                    f"query: only recorded {missing or 'nothing'}; "
                    f"only in request {extra or 'nothing'}"
                )
        elif name == "body":
            if _normal_body(want) != _normal_body(got):
                lines.append(f"body: recorded {_short(want)}, request {_short(got)}")
        elif name.startswith("header:"):
            header = name.split(":", 1)[1]
            if want != got:
                lines.append(f"header {header}: recorded {want!r}, request {got!r}")
        elif want != got:
            lines.append(f"{name}: recorded {want!r}, request {got!r}")
    return lines


def _short(value: Any, limit: int = 160) -> str:
    text = jsonlib.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "..."


# -- the transport --------------------------------------------------------------------------


class Cassette:
    """A transport that records to, or replays from, a JSON file.

    Args:
        path: The cassette file.
        inner: The transport that really sends while recording (default: a new
            `AiohttpTransport`, closed with the cassette).
        mode: "once" (record if the file is missing, else replay), "replay" (never send),
            "record" (always send, rewrite the file) or "append" (replay what matches,
            record the rest). With `CI=true` in the environment every mode is "replay".
        secrets: More secret values that must never be written, beside those the client's
            redactor knows (its credential's and `secrets=`).
        scrub_headers, scrub_params, scrub_fields: More header, query parameter and body
            field names to hide, beside the defaults.
        match_headers: Header names that must also match on replay (by default only the
            method, URL, query and body do).
        allow_repeats: Replay an interaction again when its matches are used up (by default
            each recorded interaction answers once, so retries replay in order).
        environ: The environment to read `CI` from (default: `os.environ`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        inner: AsyncTransport | None = None,
        mode: CassetteMode | str = "once",
        secrets: Iterable[SecretLike] = (),
        scrub_headers: Iterable[str] = (),
        scrub_params: Iterable[str] = (),
        scrub_fields: Iterable[str] = (),
        match_headers: Iterable[str] = (),
        allow_repeats: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if mode not in _MODES:
            raise ConfigError(f"cassette mode must be one of {', '.join(_MODES)}, got {mode!r}")
        self.path = Path(path)
        self.requested_mode = cast("CassetteMode", mode)
        self.ci = _in_ci(os.environ if environ is None else environ)
        self._inner = inner
        self._owns_inner = inner is None
        self._secrets = frozenset(s for s in map(reveal, secrets) if s)
        self._headers = frozenset(h.lower() for h in scrub_headers)
        self._params = frozenset(p.lower() for p in scrub_params)
        self._fields = SENSITIVE_FIELDS | {f.lower() for f in scrub_fields}
        self._match_headers = tuple(h.lower() for h in match_headers)
        self.allow_repeats = allow_repeats
        self._known: set[str] = set(self._secrets)
        self._recorded: list[dict[str, Any]] = []
        self._played: list[int] = []
        self._dirty = False
        exists = self.path.exists()
        if self.ci:
            # CI must never reach a real API nor write a file nobody reviews.
            self.mode: CassetteMode = "replay"
        elif mode == "once":
            self.mode = "replay" if exists else "record"
        else:
            self.mode = cast("CassetteMode", mode)
        if self.mode in ("replay", "append") and exists:
            self._recorded = self._load()
        self._dirty = self.mode == "record"

    # -- file ---------------------------------------------------------------------------------

    def _load(self) -> list[dict[str, Any]]:
        try:
            data = jsonlib.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CassetteError(f"cannot read cassette {self.path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("tether_cassette") != _FORMAT_VERSION:
            raise CassetteError(
                f"{self.path} is not a tether cassette (format {_FORMAT_VERSION}); "
                "delete it and record again"
            )
        interactions = data.get("interactions")
        if not isinstance(interactions, list):
            raise CassetteError(f"{self.path}: 'interactions' must be a list")
        return interactions

    @property
    def interactions(self) -> list[dict[str, Any]]:
        """The recorded (scrubbed) interactions, as they are or will be on disk."""
        return list(self._recorded)

    @property
    def play_count(self) -> int:
        return len(self._played)

    @property
    def unused(self) -> list[int]:
        """Indexes of recorded interactions no request has replayed."""
        played = set(self._played)
        return [i for i in range(len(self._recorded)) if i not in played]

    def save(self) -> None:
        """Write the file if anything was recorded. Raises `CassetteLeak` (and writes
        nothing) when a known secret would be written.
        """
        if not self._dirty or self.mode == "replay":
            return
        document = {"tether_cassette": _FORMAT_VERSION, "interactions": self._recorded}
        text = jsonlib.dumps(document, indent=2, ensure_ascii=False) + "\n"
        self._check_leaks(document)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        self._dirty = False

    def _check_leaks(self, document: Mapping[str, Any]) -> None:
        secrets = sorted((s for s in self._known if len(s) >= 4), key=len, reverse=True)
        if not secrets:
            return
        needles = [
            (secret, variant)
            for secret in secrets
            for variant in {
                secret,
                quote(secret, safe=""),
                quote_plus(secret, safe=""),
                jsonlib.dumps(secret)[1:-1],
            }
        ]
        leaks: list[str] = []
        for where, value in _walk(document):
            if _leaks(value, needles):
                leaks.append(where)
        if leaks:
            # Name where, never what: the message itself must not leak the value.
            raise CassetteLeak(
                f"refusing to write {self.path}: a known secret would be stored at "
                + ", ".join(leaks[:10])
                + "; scrub it with scrub_headers=, scrub_params= or scrub_fields="
            )

    # -- transport ----------------------------------------------------------------------------

    def _scrubber(self, request: Request) -> _Scrubber:
        redactor = request.redactor
        self._known.update(redactor.secrets)
        return _Scrubber(
            headers=SENSITIVE_HEADERS | redactor.headers | self._headers,
            params=SENSITIVE_PARAMS | redactor.params | self._params,
            fields=self._fields | redactor.params,
            redactor=redactor.merge(Redactor(secrets=self._secrets)),
        )

    def _request_record(self, request: Request, body: bytes, scrub: _Scrubber) -> dict[str, Any]:
        base, query = _split_url(request.url, request.params)
        return {
            "method": request.method,
            "url": scrub.redactor.url(base),
            "query": scrub.query(query),
            "headers": scrub.header_list(request.headers.items()),
            "body": scrub.body(body, request.headers.get("Content-Type", "")),
        }

    def _match_view(self, record: Mapping[str, Any]) -> dict[str, Any]:
        view = {
            "method": record["method"],
            "url": record["url"],
            "query": record.get("query") or [],
            "body": record.get("body"),
        }
        headers = {name.lower(): value for name, value in record.get("headers") or []}
        for name in self._match_headers:
            view[f"header:{name}"] = headers.get(name)
        return view

    @property
    def _fields_to_match(self) -> list[str]:
        return ["method", "url", "query", "body", *(f"header:{h}" for h in self._match_headers)]

    async def send(self, request: Request) -> Response:
        body = await _consume(request)
        scrub = self._scrubber(request)
        record = self._request_record(request, body, scrub)
        if self.mode != "record":
            index = self._find(record)
            if index is not None:
                self._played.append(index)
                return self._replay(self._recorded[index]["response"], request)
            if self.mode == "replay":
                raise self._mismatch(record)
        response = await self._transport().send(request)
        self._recorded.append(
            {"request": record, "response": self._response_record(response, scrub)}
        )
        self._played.append(len(self._recorded) - 1)
        self._dirty = True
        return response

    def _transport(self) -> AsyncTransport:
        if self._inner is None:
            self._inner = AiohttpTransport()
        return self._inner

    def _find(self, record: Mapping[str, Any]) -> int | None:
        wanted = self._match_view(record)
        fields = self._fields_to_match
        matches = [
            i
            for i, interaction in enumerate(self._recorded)
            if not _field_diff(self._match_view(interaction["request"]), wanted, fields)
        ]
        played = set(self._played)
        for index in matches:
            if index not in played:
                return index
        if matches and self.allow_repeats:
            return matches[-1]
        return None

    def _mismatch(self, record: Mapping[str, Any]) -> CassetteMismatch:
        target = f"{record['method']} {record['url']}"
        if not self.path.exists() and not self._recorded:
            hint = (
                "CI=true means replay only; record it locally (mode='once') and commit it"
                if self.ci
                else "record it with mode='once' or 'record'"
            )
            return CassetteMismatch(f"cassette {self.path} does not exist ({target}); {hint}")
        wanted = self._match_view(record)
        fields = self._fields_to_match
        ranked = sorted(
            (len(diff), i, diff)
            for i, interaction in enumerate(self._recorded)
            for diff in [_field_diff(self._match_view(interaction["request"]), wanted, fields)]
        )
        lines = [f"no interaction in {self.path} matches {target}"]
        if not ranked:
            lines.append("  the cassette is empty")
        else:
            distance, index, diff = ranked[0]
            recorded = self._recorded[index]["request"]
            if distance == 0:
                lines.append(
                    f"  interaction #{index} ({recorded['method']} {recorded['url']}) matches "
                    f"but was already played ({self._played.count(index)} time(s)); pass "
                    "allow_repeats=True, or record the repeated call"
                )
            else:
                lines.append(f"  nearest: #{index} {recorded['method']} {recorded['url']}")
                lines.extend(f"    - {line}" for line in diff)
        if self.ci:
            lines.append("  (CI=true: replay only, nothing is recorded)")
        return CassetteMismatch("\n".join(lines))

    def _response_record(self, response: Response, scrub: _Scrubber) -> dict[str, Any]:
        headers = [
            (name, value)
            for name, value in response.headers.items()
            if name.lower() not in _TRANSFER_HEADERS
        ]
        return {
            "status": response.status,
            "reason": response.reason,
            "headers": scrub.header_list(headers),
            "body": scrub.body(response.content, response.headers.get("Content-Type", "")),
        }

    def _replay(self, record: Mapping[str, Any], request: Request) -> Response:
        headers: CIMultiDict[str] = CIMultiDict(
            (str(name), str(value)) for name, value in record.get("headers") or []
        )
        content = _body_bytes(record.get("body"))
        return Response(
            int(record["status"]),
            headers=CIMultiDictProxy(headers),
            content=b"" if request.method == "HEAD" else content,
            reason=record.get("reason"),
            url=request.url,
            request=request,
        )

    async def aclose(self) -> None:
        """Save, then close the inner transport if the cassette made it."""
        try:
            self.save()
        finally:
            if self._owns_inner and self._inner is not None:
                await self._inner.aclose()
                self._inner = None

    def __repr__(self) -> str:
        return (
            f"<Cassette {self.path} mode={self.mode} recorded={len(self._recorded)} "
            f"played={len(self._played)}>"
        )


async def _consume(request: Request) -> bytes:
    content = request.content
    if content is None:
        return b""
    if isinstance(content, bytes):
        return content
    # A streamed body can be read once: keep the bytes and send those on.
    data = b"".join([chunk async for chunk in content])
    request.content = data
    return data


def _walk(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a cassette document, with a readable location."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{where}[{index}]")
    elif isinstance(value, str):
        yield where, value


def _leaks(value: str, needles: Sequence[tuple[str, str]]) -> bool:
    if any(variant in value for _, variant in needles):
        return True
    secrets = {secret.encode() for secret, _ in needles}
    # Credentials hide in base64 (Basic auth, JWT payloads, binary bodies): decode and look.
    for token in _BASE64ISH.findall(value):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(token + "=" * (-len(token) % 4))
            except (binascii.Error, ValueError):
                continue
            if any(secret in decoded for secret in secrets):
                return True
    return False
