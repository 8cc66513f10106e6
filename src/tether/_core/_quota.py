"""Server quota headers: how much the server says is left, and when it refills.

Three families are understood, newest first; when a response carries a newer family the older
ones are taken to describe the same quota and are not read:

1. IETF `RateLimit` + `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-08 to -11):
   Structured Field lists (RFC 9651) such as

       RateLimit-Policy: "burst";q=100;w=60, "daily";q=1000;w=86400
       RateLimit: "burst";r=50;t=30

   `q` is the quota, `w` the window, `qu` the quota unit, `r` what remains and `t` the seconds
   until the quota resets. A `RateLimit` item is joined with the policy of the same name.
2. The draft-07 trio `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`, with
   `RateLimit-Policy: 100;w=60` (an Integer item) for the window.
3. The de facto `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, plus the
   per-dimension variants OpenAI-style APIs send (`x-ratelimit-remaining-requests`,
   `x-ratelimit-reset-tokens: 6m0s`, ...), and Discord's `X-RateLimit-Reset-After`.

`X-RateLimit-Reset` is an epoch timestamp for some APIs (GitHub, Twitter/X, Discord) and a
delta in seconds for most others. No quota window is longer than a year, and every epoch
timestamp since 1971 is larger than a year of seconds, so a value above 366 days is read as a
timestamp (above 1e12 as milliseconds) and anything else as a delta. A timestamp is measured
against the response's own `Date` when it has one, so a skewed client clock does not shift the
reset; otherwise against `now_wall`. A reset in the past means 0.

Parsing never raises: a malformed value leaves its field None.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tether._core._advice import http_date, server_now

__all__ = ["Quota", "parse_quota", "parse_quotas"]

# Longer than any quota window in the wild (monthly quotas exist, yearly hardly).
_MAX_DELTA = 366 * 86400.0
# Epoch milliseconds pass 1e12 in 2001; no seconds value gets near it.
_EPOCH_MILLIS = 1e12


@dataclass(frozen=True, slots=True, kw_only=True)
class Quota:
    """One quota as the server described it; unknown parts are None."""

    #: Units the window allows in total (requests, unless `unit` says otherwise).
    limit: int | None = None
    #: Units left in the current window.
    remaining: int | None = None
    #: Seconds from the response until the quota refills.
    reset_in: float | None = None
    #: Length of the quota window in seconds, when the server stated it.
    window: float | None = None
    #: The policy name (IETF), or the dimension ("requests", "tokens") of suffixed headers.
    policy: str | None = None
    #: What a unit is: "request", "content-bytes", "concurrent-requests", "tokens"...
    unit: str | None = None
    #: Which header family this came from: "ratelimit", "ratelimit-draft07" or "x-ratelimit".
    source: str = "x-ratelimit"

    @property
    def fair_rate(self) -> float | None:
        """Units per second that would spend what is left exactly by the reset."""
        if self.remaining is None or self.reset_in is None:
            return None
        if self.reset_in <= 0:
            return math.inf
        return self.remaining / self.reset_in


def parse_quotas(headers: Mapping[str, str], *, now_wall: float) -> tuple[Quota, ...]:
    """Every quota the response describes, from the newest header family present.

    `headers` must be case-insensitive; repeated fields are joined when the mapping has a
    multidict `getall`. `now_wall` is the client's epoch time.
    """
    quotas = _ietf(headers, now_wall)
    if quotas:
        return quotas
    quotas = _draft07(headers, now_wall)
    if quotas:
        return quotas
    return _x_ratelimit(headers, now_wall)


def parse_quota(headers: Mapping[str, str], *, now_wall: float) -> Quota | None:
    """The most constraining quota, or None when the response carries no quota headers.

    Most constraining means the lowest `fair_rate` (an exhausted quota first); quotas without
    a known remaining count come last.
    """
    quotas = parse_quotas(headers, now_wall=now_wall)
    if not quotas:
        return None
    return min(quotas, key=_tightness)


def _tightness(quota: Quota) -> tuple[float, float]:
    fair = quota.fair_rate
    return (
        math.inf if fair is None else fair,
        math.inf if quota.remaining is None else quota.remaining,
    )


# -- header access ---------------------------------------------------------------------------


def _field(headers: Mapping[str, str], name: str) -> str | None:
    """The field value, with repeated lines joined by commas (RFC 9110 §5.3)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values = getall(name, None)
        if not values:
            return None
        return ", ".join(str(value) for value in values)
    return headers.get(name)


# -- number parsing --------------------------------------------------------------------------


def _count(value: str | None) -> int | None:
    """A non-negative count; decimals are accepted and floored, anything else is None."""
    if value is None:
        return None
    text = value.strip()
    if "," in text:
        # Early drafts allowed "100, 100;w=60": the first member is the current value.
        text = text.split(",", 1)[0].strip()
    text = text.split(";", 1)[0].strip()
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return math.floor(number)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|h|m|s))", re.IGNORECASE)
_DURATION_FULL = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float | None:
    """Go-style durations ("1s", "6m0s", "20ms", "1h2m3.5s"), as OpenAI sends them."""
    if not _DURATION_FULL.fullmatch(text):
        return None
    return sum(
        float(amount) * _DURATION_UNITS[unit.lower()] for amount, unit in _DURATION.findall(text)
    )


def _reset(value: str | None, headers: Mapping[str, str], now_wall: float) -> float | None:
    """Seconds until reset from a delta, an epoch timestamp, a duration or an HTTP-date."""
    if value is None:
        return None
    whole = value.strip()
    # Early drafts allowed a list ("30, 30;w=60"): the first member is the current value.
    text = whole.split(",", 1)[0].split(";", 1)[0].strip()
    try:
        number = float(text)
    except ValueError:
        duration = _duration(text)
        if duration is not None:
            return duration
        when = http_date(whole)
        if when is None:
            return None
        return max(0.0, when - server_now(headers, now_wall))
    if not math.isfinite(number) or number < 0:
        return None
    return _reset_number(number, headers, now_wall)


def _reset_number(number: float, headers: Mapping[str, str], now_wall: float) -> float:
    """Seconds until reset from a number that is a delta or an epoch timestamp."""
    if number >= _EPOCH_MILLIS:
        number /= 1000.0
    if number > _MAX_DELTA:
        return max(0.0, number - server_now(headers, now_wall))
    return number


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _int(value: object) -> int | None:
    seconds = _seconds(value)
    return None if seconds is None else math.floor(seconds)


# -- Structured Fields (RFC 9651), the subset these headers use ------------------------------

_Bare = int | float | str | bool | bytes
_Member = tuple[_Bare, dict[str, _Bare]]

_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*")
_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_NUMBER = re.compile(r"-?\d{1,15}(?:\.\d{1,3})?")
_BYTES = re.compile(r":[A-Za-z0-9+/=]*:")


class _Malformed(Exception):
    pass


class _SFParser:
    """A small, whitespace-tolerant List parser; any syntax error rejects the whole field
    (RFC 9651 §4.2: a field that fails to parse is ignored)."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def parse_list(self) -> list[_Member]:
        members: list[_Member] = []
        self._skip_ws()
        while self.pos < len(self.text):
            members.append(self._member())
            self._skip_ws()
            if self.pos >= len(self.text):
                break
            if self.text[self.pos] != ",":
                raise _Malformed
            self.pos += 1
            self._skip_ws()
            if self.pos >= len(self.text):
                raise _Malformed  # trailing comma
        return members

    def _member(self) -> _Member:
        value = self._bare()
        params: dict[str, _Bare] = {}
        while True:
            self._skip_ws()
            if self.pos >= len(self.text) or self.text[self.pos] != ";":
                return value, params
            self.pos += 1
            self._skip_ws()
            match = _KEY.match(self.text, self.pos)
            if match is None:
                raise _Malformed
            self.pos = match.end()
            key = match.group()
            if self.pos < len(self.text) and self.text[self.pos] == "=":
                self.pos += 1
                params[key] = self._bare()
            else:
                params[key] = True

    def _bare(self) -> _Bare:
        text = self.text
        if self.pos >= len(text):
            raise _Malformed
        char = text[self.pos]
        if char == '"':
            return self._string()
        if char == "?":
            flag = text[self.pos + 1 : self.pos + 2]
            if flag not in {"0", "1"}:
                raise _Malformed
            self.pos += 2
            return flag == "1"
        for pattern in (_NUMBER, _BYTES, _TOKEN):
            match = pattern.match(text, self.pos)
            if match is not None:
                self.pos = match.end()
                token = match.group()
                if pattern is _NUMBER:
                    return float(token) if "." in token else int(token)
                if pattern is _BYTES:
                    return token.encode("ascii")
                return token
        raise _Malformed

    def _string(self) -> str:
        text = self.text
        self.pos += 1
        out: list[str] = []
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            if char == "\\":
                if self.pos >= len(text) or text[self.pos] not in '"\\':
                    raise _Malformed
                out.append(text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        raise _Malformed


def _sf_list(value: str | None) -> list[_Member]:
    if value is None:
        return []
    try:
        return _SFParser(value).parse_list()
    except _Malformed:
        return []


# -- the three families ----------------------------------------------------------------------


def _policy_name(value: _Bare) -> str | None:
    return value if isinstance(value, str) else None


def _ietf(headers: Mapping[str, str], now_wall: float) -> tuple[Quota, ...]:
    current = _sf_list(_field(headers, "ratelimit"))
    policies = _sf_list(_field(headers, "ratelimit-policy"))
    # Only the current form (named items with `q`) is read here; Integer items belong to
    # draft-07 and are read with the trio.
    named_policies = {
        _policy_name(value): params
        for value, params in policies
        if _policy_name(value) is not None and "q" in params
    }
    quotas: list[Quota] = []
    seen: set[str | None] = set()
    for value, params in current:
        name = _policy_name(value)
        if name is None or "r" not in params:
            continue
        seen.add(name)
        policy = named_policies.get(name, {})
        unit = policy.get("qu")
        reset = _seconds(params.get("t"))
        quotas.append(
            Quota(
                limit=_int(policy.get("q")),
                remaining=_int(params.get("r")),
                reset_in=None if reset is None else _reset_number(reset, headers, now_wall),
                window=_seconds(policy.get("w")),
                policy=name,
                unit=unit if isinstance(unit, str) else None,
                source="ratelimit",
            )
        )
    for name, policy in named_policies.items():
        if name in seen:
            continue
        unit = policy.get("qu")
        # A policy alone still tells the client its budget (limit per window) up front.
        quotas.append(
            Quota(
                limit=_int(policy.get("q")),
                window=_seconds(policy.get("w")),
                policy=name,
                unit=unit if isinstance(unit, str) else None,
                source="ratelimit",
            )
        )
    return tuple(quotas)


def _draft07(headers: Mapping[str, str], now_wall: float) -> tuple[Quota, ...]:
    limit_value = _field(headers, "ratelimit-limit")
    remaining_value = _field(headers, "ratelimit-remaining")
    reset_value = _field(headers, "ratelimit-reset")
    if limit_value is None and remaining_value is None and reset_value is None:
        return ()
    window = None
    for value, params in _sf_list(_field(headers, "ratelimit-policy")):
        if isinstance(value, int) and not isinstance(value, bool):
            window = _seconds(params.get("w"))
            break
    if window is None and limit_value is not None:
        # Drafts 01-05 put the policy into RateLimit-Limit itself: "100, 100;w=60".
        for _value, params in _sf_list(limit_value)[1:]:
            window = _seconds(params.get("w"))
            if window is not None:
                break
    return (
        Quota(
            limit=_count(limit_value),
            remaining=_count(remaining_value),
            reset_in=_reset(reset_value, headers, now_wall),
            window=window,
            source="ratelimit-draft07",
        ),
    )


def _x_ratelimit(headers: Mapping[str, str], now_wall: float) -> tuple[Quota, ...]:
    # Okta (and a few others) spell it X-Rate-Limit-*; the meaning is the same.
    okta = ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset")
    prefix = "x-rate-limit" if any(_field(headers, name) for name in okta) else "x-ratelimit"
    quotas: list[Quota] = []
    for suffix in ("", "-requests", "-tokens"):
        limit_value = _field(headers, f"{prefix}-limit{suffix}")
        remaining_value = _field(headers, f"{prefix}-remaining{suffix}")
        reset_value = None
        if not suffix:
            # Discord sends both; the delta is more precise and immune to clock skew.
            reset_value = _field(headers, f"{prefix}-reset-after")
        if reset_value is None:
            reset_value = _field(headers, f"{prefix}-reset{suffix}")
        if limit_value is None and remaining_value is None and reset_value is None:
            continue
        dimension = suffix[1:] or None
        quotas.append(
            Quota(
                limit=_count(limit_value),
                remaining=_count(remaining_value),
                reset_in=_reset(reset_value, headers, now_wall),
                policy=dimension,
                unit=dimension,
                source="x-ratelimit",
            )
        )
    return tuple(quotas)
