"""Signed timestamps: strict parsing and a symmetric tolerance window."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason

__all__ = ["DEFAULT_TOLERANCE", "Freshness", "freshness", "parse_timestamp", "sign_timestamp"]

#: Seconds a signed timestamp may differ from now, either way. Stripe, Slack and the Standard
#: Webhooks libraries all use five minutes.
DEFAULT_TOLERANCE = 300

# ASCII digits only: int() also takes " 12", "+12", "1_000" and other scripts' digits, and the
# Standard Webhooks spec says "integer unix timestamp". Twelve digits reach the year 33658 and
# keep a hostile header from becoming a huge integer.
_MAX_DIGITS = 12


def parse_timestamp(value: str, where: str) -> int:
    """Seconds since the epoch from a signed timestamp field.

    Raises:
        WebhookVerificationError: BAD_TIMESTAMP unless `value` is a plain decimal integer.
    """
    # isascii() and isdigit() together are [0-9]+, without a regex on every delivery.
    if not (0 < len(value) <= _MAX_DIGITS and value.isascii() and value.isdigit()):
        raise WebhookVerificationError(
            WebhookVerificationReason.BAD_TIMESTAMP,
            f"{where} must be a whole number of seconds since the epoch",
        )
    return int(value)


# Not frozen: one is made per verified delivery, and a frozen dataclass's __init__ costs an
# object.__setattr__ call per field. Nothing assigns to it after construction.
@dataclass(slots=True)
class Freshness:
    """The replay window: a signed timestamp must lie within `tolerance` seconds of `now`."""

    now: float
    #: None turns the check off, e.g. to re-verify stored deliveries long after the fact.
    tolerance: float | None

    def check(self, timestamp: int) -> None:
        """Accept `timestamp` if it lies inside the window, bounds included.

        Raises:
            WebhookVerificationError: TIMESTAMP_TOO_OLD or TIMESTAMP_IN_FUTURE.
        """
        if self.tolerance is None:
            return
        age = self.now - timestamp
        if age > self.tolerance:
            raise WebhookVerificationError(
                WebhookVerificationReason.TIMESTAMP_TOO_OLD,
                f"the signed timestamp is {age:.0f} s old; the tolerance is {self.tolerance:g} s",
            )
        # Symmetric on purpose: stripe-python only bounds the past, so a captured request
        # stamped far ahead would stay replayable until that future time.
        if -age > self.tolerance:
            raise WebhookVerificationError(
                WebhookVerificationReason.TIMESTAMP_IN_FUTURE,
                f"the signed timestamp is {-age:.0f} s in the future; "
                f"the tolerance is {self.tolerance:g} s",
            )


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def freshness(now: object, tolerance: object) -> Freshness:
    """The window for one verification; `now` defaults to the system clock.

    Raises:
        ConfigError: a `now` or `tolerance` that is not a finite number (tolerance >= 0).
    """
    window: float | None = None
    if tolerance is not None:
        window = _finite(tolerance)
        if window is None or window < 0:
            raise ConfigError("tolerance must be None or a finite number of seconds >= 0")
    if now is None:
        return Freshness(time.time(), window)
    instant = _finite(now)
    if instant is None:
        raise ConfigError("now must be a finite number of seconds since the epoch")
    return Freshness(instant, window)


def sign_timestamp(timestamp: object) -> int:
    """The timestamp to sign with: the given whole seconds, or now.

    Raises:
        ConfigError: anything but a non-negative int.
    """
    if timestamp is None:
        return int(time.time())
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        raise ConfigError("timestamp must be a non-negative int of seconds since the epoch")
    return timestamp
