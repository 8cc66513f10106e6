"""OAuth 2.0 token state: pure decisions, no I/O, time passed in.

What a token response means (RFC 6749 §5.1, §5.2, §6), when a token should be refreshed, how
far the server's clock is from ours, how long to back off after a failed early refresh, and
what a `WWW-Authenticate` challenge asks for (RFC 6750 §3, RFC 9449 §7.1). The credentials in
`tether.auth` do the I/O around these rules.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import SecretStr

__all__ = [
    "Challenge",
    "Lifecycle",
    "TokenAction",
    "TokenErrorKind",
    "TokenResponseError",
    "TokenSet",
    "classify_token_error",
    "code_challenge_s256",
    "decide",
    "find_challenge",
    "merge_token_response",
    "parse_www_authenticate",
    "refresh_backoff",
    "skew_from_date",
]

#: Fields of a token response that are secrets; everything else may be stored in `extra`.
_SECRET_FIELDS = frozenset({"access_token", "refresh_token", "id_token"})
#: Fields a token set keeps as attributes rather than in `extra`.
_KNOWN_FIELDS = _SECRET_FIELDS | {"token_type", "expires_in", "expires_at", "scope"}


class TokenResponseError(ValueError):
    """A token endpoint answered 200 with a body that is not a usable token response."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenSet:
    """What one successful token response left us, in local wall-clock seconds.

    `version` grows by one with every change; stores use it for compare-and-swap, so a process
    can tell that a peer has already rotated the token.
    """

    access_token: SecretStr
    token_type: str = "Bearer"  # noqa: S105 - a token type name, not a secret
    #: When the access token stops working, on our clock (skew already removed); None: unknown.
    expires_at: float | None = None
    #: When we received it, on our clock.
    issued_at: float = 0.0
    #: When to start refreshing early; computed once, when the token set is made.
    refresh_at: float | None = None
    refresh_token: SecretStr | None = None
    id_token: SecretStr | None = None
    scope: str | None = None
    version: int = 0
    #: Other response fields, not secret (e.g. a vendor's `user_id`).
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lifetime(self) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - self.issued_at

    def secrets(self) -> list[str]:
        values = [self.access_token.get_secret_value()]
        if self.refresh_token is not None:
            values.append(self.refresh_token.get_secret_value())
        if self.id_token is not None:
            values.append(self.id_token.get_secret_value())
        return values

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping for token stores (it holds the secrets in clear)."""
        return {
            "access_token": self.access_token.get_secret_value(),
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "issued_at": self.issued_at,
            "refresh_at": self.refresh_at,
            "refresh_token": (
                self.refresh_token.get_secret_value() if self.refresh_token is not None else None
            ),
            "id_token": self.id_token.get_secret_value() if self.id_token is not None else None,
            "scope": self.scope,
            "version": self.version,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokenSet:
        def secret(name: str) -> SecretStr | None:
            value = data.get(name)
            return SecretStr(value) if isinstance(value, str) and value else None

        access = secret("access_token")
        if access is None:
            raise TokenResponseError("stored token set has no access_token")
        version = data.get("version") or 0
        extra = data.get("extra") or {}
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise TokenResponseError("stored token set has an invalid version")
        if not isinstance(extra, Mapping):
            raise TokenResponseError("stored token set has invalid extra fields")
        return cls(
            access_token=access,
            token_type=str(data.get("token_type") or "Bearer"),
            expires_at=_number(data.get("expires_at")),
            issued_at=_number(data.get("issued_at")) or 0.0,
            refresh_at=_number(data.get("refresh_at")),
            refresh_token=secret("refresh_token"),
            id_token=secret("id_token"),
            scope=data.get("scope") if isinstance(data.get("scope"), str) else None,
            version=version,
            extra=dict(extra),
        )

    def __repr__(self) -> str:
        # Never the token values: only what helps debugging.
        return (
            f"TokenSet(token_type={self.token_type!r}, expires_at={self.expires_at!r}, "
            f"version={self.version}, refresh_token={'set' if self.refresh_token else None}, "
            f"scope={self.scope!r})"
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lifecycle:
    """When a token is refreshed.

    Refreshing starts at `expires_at - min(max_leeway, lifetime * fraction)`, the fraction
    drawn between `min_fraction` and `max_fraction` once per token so that processes sharing a
    token do not all refresh at the same instant. A fixed leeway as long as the token's lifetime
    would refresh on every call (a 60 s token with a 60 s leeway); a fraction cannot.
    """

    max_leeway: float = 60.0
    min_fraction: float = 0.10
    max_fraction: float = 0.20
    #: Before hard expiry, a margin for the request's own trip to the server.
    hard_margin: float = 5.0
    #: Lifetime assumed when the server gives none and none can be read from a JWT.
    default_lifetime: float | None = 3600.0
    #: After a failed early refresh: first wait, and cap, before trying again.
    backoff_base: float = 30.0
    backoff_cap: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_fraction <= self.max_fraction < 1:
            raise ValueError("Lifecycle fractions must satisfy 0 <= min <= max < 1")
        if self.max_leeway < 0 or self.hard_margin < 0:
            raise ValueError("Lifecycle leeway and margin must not be negative")

    def refresh_at(self, issued_at: float, expires_at: float | None, rand: float) -> float | None:
        """The moment to start refreshing early; `rand` in [0, 1] picks the fraction."""
        if expires_at is None:
            return None
        lifetime = max(0.0, expires_at - issued_at)
        fraction = self.min_fraction + (self.max_fraction - self.min_fraction) * rand
        return expires_at - min(self.max_leeway, lifetime * fraction)

    def hard_expiry(self, token: TokenSet) -> float | None:
        """After this the token is not sent: callers wait for a new one."""
        if token.expires_at is None:
            return None
        lifetime = token.lifetime or 0.0
        # Never more than half the lifetime, so a very short token is still used at all.
        return token.expires_at - min(self.hard_margin, lifetime * 0.5)


class TokenAction(enum.Enum):
    """What a caller does with the token set it holds."""

    #: Send it.
    USE = "use"
    #: Send it, and refresh early if nobody is doing so (the token is still valid).
    USE_AND_REFRESH = "use_and_refresh"
    #: Do not send it: wait for a new token.
    REFRESH = "refresh"


def decide(
    token: TokenSet | None, *, now: float, lifecycle: Lifecycle, retry_after: float = 0.0
) -> TokenAction:
    """The action for `token` at wall time `now`.

    `retry_after` is the earliest time a new early refresh may start after one failed: until
    then a still-valid token is used as it is (soft expiry) and nobody calls the token endpoint.
    """
    if token is None:
        return TokenAction.REFRESH
    hard = lifecycle.hard_expiry(token)
    if hard is not None and now >= hard:
        return TokenAction.REFRESH
    refresh_at = token.refresh_at
    if refresh_at is None and token.expires_at is not None:
        refresh_at = lifecycle.refresh_at(token.issued_at, token.expires_at, 0.5)
    if refresh_at is not None and now >= refresh_at and now >= retry_after:
        return TokenAction.USE_AND_REFRESH
    return TokenAction.USE


def refresh_backoff(
    failures: int, *, now: float, token: TokenSet, lifecycle: Lifecycle, rand: float
) -> float:
    """When to try again after `failures` failed early refreshes in a row.

    Exponential from `backoff_base`, jittered between half and all of the ceiling (MSAL and
    azure-identity also wait ~30 s), and never past the token's hard expiry: by then a refresh
    is needed whatever the server says.
    """
    ceiling = min(lifecycle.backoff_cap, lifecycle.backoff_base * 2.0 ** min(failures - 1, 30))
    wait = ceiling * (0.5 + 0.5 * rand)
    hard = lifecycle.hard_expiry(token)
    at = now + wait
    return at if hard is None else min(at, hard)


def skew_from_date(date_header: str | None, *, received_at: float) -> float:
    """Seconds the server's clock is ahead of ours, from its `Date` header (RFC 9110 §6.6.1).

    The header has one-second resolution and the response took time to arrive, so differences
    of up to two seconds are noise and count as no skew.
    """
    if not date_header:
        return 0.0
    try:
        server_time = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if server_time.tzinfo is None:
        return 0.0
    skew = server_time.timestamp() - received_at
    return 0.0 if abs(skew) <= 2.0 else skew


def _jwt_exp(token: str) -> float | None:
    """The `exp` claim of a JWT access token, unverified: only ever used as a lifetime hint."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return None
    return _number(claims.get("exp")) if isinstance(claims, dict) else None


def merge_token_response(
    body: Any,
    *,
    previous: TokenSet | None,
    received_at: float,
    skew: float,
    lifecycle: Lifecycle,
    rand: float,
    requested_scope: str | None = None,
) -> TokenSet:
    """The token set after a successful token response `body` (RFC 6749 §5.1).

    - An omitted `refresh_token` keeps the previous one (RFC 6749 §6: the server MAY issue a
      new one; when it does not, the old one stays valid).
    - An omitted `scope` means the scope requested (RFC 6749 §5.1), else the previous scope.
    - `expires_in` may be a number or a numeric string; when absent, an absolute `expires_at`
      (Strava and others) or the access token's JWT `exp` is used, both on the server's clock
      and so corrected by `skew`; failing all, `lifecycle.default_lifetime`.
    """
    if not isinstance(body, Mapping):
        raise TokenResponseError("token response is not a JSON object")
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise TokenResponseError("token response has no access_token")
    token_type = body.get("token_type")
    if token_type is not None and not isinstance(token_type, str):
        raise TokenResponseError("token response has a non-string token_type")
    # RFC 6749 §5.1: token_type is case-insensitive; normalise the two we know how to send.
    kind = (token_type or "Bearer").strip()
    if kind.lower() == "bearer":
        kind = "Bearer"
    elif kind.lower() == "dpop":
        kind = "DPoP"

    expires_at: float | None = None
    expires_in = _number(body.get("expires_in"))
    if expires_in is not None and expires_in > 0:
        expires_at = received_at + expires_in
    else:
        absolute = _number(body.get("expires_at")) or _jwt_exp(access)
        if absolute is not None:
            expires_at = absolute - skew
        elif lifecycle.default_lifetime is not None:
            expires_at = received_at + lifecycle.default_lifetime

    refresh = body.get("refresh_token")
    if isinstance(refresh, str) and refresh:
        refresh_token: SecretStr | None = SecretStr(refresh)
    else:
        refresh_token = previous.refresh_token if previous is not None else None
    id_token = body.get("id_token")
    scope = body.get("scope")
    if not isinstance(scope, str):
        scope = requested_scope
        if scope is None and previous is not None:
            scope = previous.scope
    extra = {k: v for k, v in body.items() if k not in _KNOWN_FIELDS and _plain(v)}
    return TokenSet(
        access_token=SecretStr(access),
        token_type=kind,
        expires_at=expires_at,
        issued_at=received_at,
        refresh_at=lifecycle.refresh_at(received_at, expires_at, rand),
        refresh_token=refresh_token,
        id_token=SecretStr(id_token) if isinstance(id_token, str) and id_token else None,
        scope=scope or None,
        version=(previous.version + 1) if previous is not None else 1,
        extra=extra,
    )


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def with_version(token: TokenSet, version: int) -> TokenSet:
    return replace(token, version=version)


class TokenErrorKind(enum.Enum):
    """How to react to a failed token request (RFC 6749 §5.2, RFC 8628 §3.5, RFC 9449 §8)."""

    #: The grant (refresh token, code, device code) is dead: a person must authorize again.
    INVALID_GRANT = "invalid_grant"
    #: The client's own authentication failed: configuration, not something a retry fixes.
    INVALID_CLIENT = "invalid_client"
    #: Server trouble: try again after a backoff.
    RETRYABLE = "retryable"
    #: Device flow: the user has not finished yet.
    AUTHORIZATION_PENDING = "authorization_pending"
    #: Device flow: poll less often (interval + 5 s).
    SLOW_DOWN = "slow_down"
    #: Device flow: the device code expired or the user said no.
    DEVICE_DENIED = "device_denied"
    #: DPoP: retry once with the nonce the server just gave.
    USE_DPOP_NONCE = "use_dpop_nonce"
    #: Anything else: a request the server will not accept as it is.
    FATAL = "fatal"


def classify_token_error(status: int, body: Any) -> tuple[TokenErrorKind, str | None]:
    """The reaction to a token endpoint answer `status` with decoded JSON `body` (or None)."""
    code = body.get("error") if isinstance(body, Mapping) else None
    code = code if isinstance(code, str) else None
    if code == "invalid_grant":
        return TokenErrorKind.INVALID_GRANT, code
    if code == "invalid_client" or (status == 401 and code is None):
        # RFC 6749 §5.2: a 401 from the token endpoint is the client failing to authenticate.
        return TokenErrorKind.INVALID_CLIENT, code or "invalid_client"
    if code == "authorization_pending":
        return TokenErrorKind.AUTHORIZATION_PENDING, code
    if code == "slow_down":
        return TokenErrorKind.SLOW_DOWN, code
    if code in ("expired_token", "access_denied"):
        return TokenErrorKind.DEVICE_DENIED, code
    if code == "use_dpop_nonce":
        return TokenErrorKind.USE_DPOP_NONCE, code
    if code == "temporarily_unavailable" or status >= 500 or status in (408, 429):
        return TokenErrorKind.RETRYABLE, code
    return TokenErrorKind.FATAL, code


@dataclass(frozen=True, slots=True)
class Challenge:
    """One `WWW-Authenticate` challenge: a scheme and its auth-params (RFC 9110 §11.6.1)."""

    scheme: str
    params: Mapping[str, str]

    @property
    def error(self) -> str | None:
        return self.params.get("error")


# RFC 9110 §11.2: auth-param = token BWS "=" BWS ( token / quoted-string )
_HTTP_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # noqa: S105 - RFC 9110 grammar
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"\s*({_HTTP_TOKEN})\s*=\s*({_HTTP_TOKEN}|{_QUOTED})\s*(,|$)")
_SCHEME = re.compile(rf"\s*({_HTTP_TOKEN})(?:\s+|$|(?=,))")
_TOKEN68 = re.compile(r"\s*([A-Za-z0-9\-._~+/]+=*)\s*(,|$)")


def parse_www_authenticate(value: str) -> list[Challenge]:
    """The challenges in a `WWW-Authenticate` value, e.g. RFC 6750 §3's
    `Bearer realm="x", error="invalid_token"` or RFC 9449 §7.1's `DPoP error="use_dpop_nonce"`.

    Unparseable trailing text is ignored: a challenge we cannot read is treated as absent.
    """
    challenges: list[Challenge] = []
    pos = 0
    length = len(value)
    while pos < length:
        while pos < length and value[pos] in " ,\t":
            pos += 1
        if pos >= length:
            break
        match = _SCHEME.match(value, pos)
        if match is None:
            break
        scheme = match.group(1)
        pos = match.end()
        params: dict[str, str] = {}
        while pos < length:
            param = _PARAM.match(value, pos)
            if param is None:
                # A token68 (e.g. `Negotiate abc==`) may stand where the params would.
                token68 = _TOKEN68.match(value, pos) if not params else None
                if token68 is not None:
                    pos = token68.end()
                break
            raw = param.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            params[param.group(1).lower()] = raw
            pos = param.end()
        challenges.append(Challenge(scheme, params))
    return challenges


def find_challenge(challenges: list[Challenge], *schemes: str) -> Challenge | None:
    wanted = {s.lower() for s in schemes}
    for challenge in challenges:
        if challenge.scheme.lower() in wanted:
            return challenge
    return None


def code_challenge_s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))), without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
