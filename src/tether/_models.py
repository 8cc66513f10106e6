"""Request and Response: the values that flow through the pipeline."""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from tether._redact import Redactor
from tether._version import __version__

__all__ = ["Content", "Headers", "Request", "Response"]

#: Response headers: case-insensitive, read-only, repeated fields kept.
Headers = CIMultiDictProxy[str]

#: A request body: bytes can be replayed on retry; an async iterable can be sent only once.
Content = bytes | AsyncIterable[bytes] | None

_REQUEST_ID_HEADERS = (
    "x-request-id",
    "request-id",
    "x-amzn-requestid",
    "x-github-request-id",
    "x-slack-req-id",
    "cf-ray",
)

_NO_REDACTION = Redactor()

#: The headers of every client created without `headers=`: one read-only map shared by all
#: their requests, which the aiohttp transport recognises (by identity) and leaves to the
#: session it owns, where they are set once.
DEFAULT_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(
    CIMultiDict({"User-Agent": f"tether/{__version__}"})
)

# The decoder `json.loads` itself uses when given no options.
_JSON = jsonlib.JSONDecoder()

# Hot-path constructors below allocate with this and fill the slots themselves: calling a class
# with keyword arguments costs CPython a tuple, a dict and a trip through type.__call__, more
# than a whole request spends in tether's own code.
_new = object.__new__


class Request:
    """One HTTP request as the pipeline sees it. Policies may change it between attempts."""

    __slots__ = (
        "_headers",
        "connect_timeout",
        "content",
        "deadline",
        "extensions",
        "method",
        "params",
        "redactor",
        "timeout",
        "url",
    )

    def __init__(
        self,
        method: str,
        url: str,
        *,
        params: list[tuple[str, str]] | None = None,
        headers: CIMultiDict[str] | None = None,
        content: Content = None,
        deadline: float | None = None,
        redactor: Redactor = _NO_REDACTION,
    ) -> None:
        self.method = method
        #: Absolute URL; `params` are appended by the transport.
        self.url = url
        self.params = params
        self._headers: CIMultiDict[str] | CIMultiDictProxy[str] = (
            headers if headers is not None else CIMultiDict()
        )
        self.content = content
        #: Monotonic time by which the whole call (all attempts and waits) must finish.
        self.deadline = deadline
        #: This attempt's time limit and connect limit, set by the retry policy before each try.
        self.timeout: float | None = None
        self.connect_timeout: float | None = None
        #: Per-request options for policies (cache TTL, rate-limit cost, ...).
        self.extensions: dict[str, Any] = {}
        self.redactor = redactor

    def copy(self) -> Request:
        """A snapshot whose headers and parameters can be changed independently."""
        clone = Request(
            self.method,
            self.url,
            params=list(self.params) if self.params is not None else None,
            headers=self._headers.copy(),
            content=self.content,
            deadline=self.deadline,
            redactor=self.redactor,
        )
        clone.timeout = self.timeout
        clone.connect_timeout = self.connect_timeout
        clone.extensions = dict(self.extensions)
        return clone

    @property
    def headers(self) -> CIMultiDict[str]:
        """The headers to send; policies may change them."""
        headers = self._headers
        if type(headers) is CIMultiDictProxy:
            # The client's defaults, shared read-only by every request that added nothing to
            # them: copied on first use, so a request that nobody looks at never pays for it.
            headers = self._headers = headers.copy()
        return headers  # type: ignore[return-value]

    @headers.setter
    def headers(self, headers: CIMultiDict[str]) -> None:
        self._headers = headers

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent again on a retry."""
        return self.content is None or isinstance(self.content, bytes)

    def redacted_url(self) -> str:
        """The full URL with query parameters, safe to log."""
        url = self.url
        if self.params:
            joiner = "&" if "?" in url else "?"
            url = url + joiner + "&".join(f"{name}={value}" for name, value in self.params)
        return self.redactor.url(url)

    def __repr__(self) -> str:
        return f"<Request [{self.method} {self.redacted_url()}]>"


def new_request(
    *,
    method: str,
    url: str,
    params: list[tuple[str, str]] | None,
    headers: CIMultiDict[str] | CIMultiDictProxy[str],
    content: Content,
    deadline: float | None,
    redactor: Redactor,
) -> Request:
    """`Request(...)` without the call overhead, for the client's own request path.

    `headers` may be a read-only view shared with other requests (the client's defaults);
    `Request.headers` copies it before handing it out.
    """
    request: Request = _new(Request)
    request.method = method
    request.url = url
    request.params = params
    request._headers = headers
    request.content = content
    request.deadline = deadline
    request.timeout = None
    request.connect_timeout = None
    request.extensions = {}
    request.redactor = redactor
    return request


class Response:
    """A complete HTTP response; the body has been read."""

    __slots__ = (
        "_text",
        "attempts",
        "content",
        "elapsed",
        "from_cache",
        "headers",
        "reason",
        "request",
        "status",
        "url",
    )

    def __init__(
        self,
        status: int,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        content: bytes = b"",
        json: Any = None,
        text: str | None = None,
        reason: str | None = None,
        url: str = "",
        request: Request | None = None,
    ) -> None:
        header_map = headers if isinstance(headers, CIMultiDictProxy) else None
        if header_map is None:
            raw: CIMultiDict[str] = CIMultiDict(headers or ())
            if json is not None:
                content = jsonlib.dumps(json, separators=(",", ":")).encode()
                raw.setdefault("Content-Type", "application/json")
            elif text is not None:
                content = text.encode()
                raw.setdefault("Content-Type", "text/plain; charset=utf-8")
            header_map = CIMultiDictProxy(raw)
        self.status = status
        self.headers: Headers = header_map
        self.content = content
        self.reason = reason if reason is not None else _reason(status)
        self.url = url
        self.request = request
        #: Seconds from the first attempt's start to this response.
        self.elapsed = 0.0
        #: How many attempts the call took.
        self.attempts = 1
        self.from_cache = False
        self._text: str | None = None

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def request_id(self) -> str | None:
        """The server's id for this request, from the usual headers, for support tickets."""
        for name in _REQUEST_ID_HEADERS:
            value = self.headers.get(name)
            if value:
                return value
        return None

    @property
    def charset(self) -> str:
        content_type = self.headers.get("content-type", "")
        for part in content_type.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"')
        return "utf-8"

    @property
    def text(self) -> str:
        if self._text is None:
            try:
                self._text = self.content.decode(self.charset, errors="replace")
            except LookupError:
                self._text = self.content.decode("utf-8", errors="replace")
        return self._text

    def json(self) -> Any:
        content = self.content
        # RFC 8259 §8.1: JSON is UTF-8. A body opening with an ASCII character and a non-NUL
        # byte carries no BOM and cannot be UTF-16/32, which is all json.loads would sniff for.
        if len(content) > 1 and 0 < content[0] < 0x80 and content[1]:
            return _JSON.decode(content.decode("utf-8", "surrogatepass"))
        return jsonlib.loads(content)

    def __repr__(self) -> str:
        return f"<Response [{self.status} {self.reason}]>"


def received_response(
    *,
    status: int,
    headers: Headers,
    content: bytes,
    reason: str | None,
    url: str,
    request: Request,
) -> Response:
    """`Response(...)` without the call overhead, for transports whose headers are already a
    read-only case-insensitive view."""
    response: Response = _new(Response)
    response.status = status
    response.headers = headers
    response.content = content
    response.reason = reason if reason is not None else _reason(status)
    response.url = url
    response.request = request
    response.elapsed = 0.0
    response.attempts = 1
    response.from_cache = False
    response._text = None
    return response


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
