"""Redirects, followed by the pipeline rather than the transport, so credentials stay home.

aiohttp and httpx drop `Authorization` on a cross-origin redirect but forward every other
header, so an `X-Api-Key` would travel to whatever host a `Location` names. Here a hop to
another origin, or from https to http, carries none of the headers and query parameters the
client treats as sensitive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from tether._errors import NetworkError, TooManyRedirects
from tether._types import Send

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["CROSS_ORIGIN", "RedirectPolicy"]

#: Set on a redirected request's extensions when it left the original origin: credentials
#: must not be added to it.
CROSS_ORIGIN = "tether.cross_origin"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


class RedirectPolicy:
    """Follows up to `max_redirects` redirects (RFC 9110 §15.4)."""

    __slots__ = ("_max",)

    def __init__(self, *, max_redirects: int = 10) -> None:
        self._max = max_redirects

    async def send(self, request: Request, next_: Send) -> Response:
        response = await next_(request)
        if response.status not in _REDIRECTS:
            return response
        hops = 0
        original = request
        while response.status in _REDIRECTS:
            location = response.headers.get("location")
            if location is None:
                return response
            hops += 1
            if hops > self._max:
                raise TooManyRedirects(
                    f"{original.method} {original.redacted_url()}: more than {self._max} redirects",
                    request=original,
                )
            target = urljoin(request.url, location)
            request = self._next_request(request, response.status, target)
            response = await next_(request)
        return response

    @staticmethod
    def _next_request(previous: Request, status: int, target: str) -> Request:
        hop = previous.copy()
        # The Location carries the query the server wants; of ours, only credential parameters
        # still apply (and only while we stay on the same origin, see below).
        hop.url = target
        sensitive_params = previous.redactor.params
        hop.params = [(n, v) for n, v in previous.params or () if n.lower() in sensitive_params]
        # RFC 9110 §15.4.4: 303 means GET the new location. For 301/302 every client turns a
        # POST into a GET too (§15.4.2-3 notes it), and servers rely on it.
        if status == 303 or (status in (301, 302) and previous.method == "POST"):
            hop.method = "GET" if previous.method != "HEAD" else "HEAD"
            hop.content = None
            for name in ("Content-Type", "Content-Length", "Transfer-Encoding"):
                hop.headers.popall(name, None)
        elif not previous.replayable:
            raise NetworkError(
                f"{previous.method} {previous.redacted_url()}: redirected with {status}, but the "
                "streamed body cannot be sent again",
                request=previous,
            )
        old, new = _origin(previous.url), _origin(target)
        if old != new or (old[0] == "https" and new[0] != "https"):
            redactor = previous.redactor
            for name in list(hop.headers):
                if name.lower() in redactor.headers:
                    hop.headers.popall(name, None)
            hop.url = _without_params(target, redactor.params)
            hop.params = None
            hop.extensions[CROSS_ORIGIN] = True
        return hop


def _without_params(url: str, names: frozenset[str]) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(n, v) for n, v in pairs if n.lower() not in names]
    if len(kept) == len(pairs):
        return url
    return urlunsplit(parts._replace(query=urlencode(kept)))
