"""The exception tree. Retry safety is visible in the type.

    TetherError
      ConfigError                  bad configuration or API misuse, raised before any I/O
      RequestError                 transport level; `.sent` says whether the server may have it
        ConnectError               never sent: always safe to retry
        TimeoutError
          ConnectTimeout           never sent
          ReadTimeout              sent, outcome unknown
        NetworkError               sent, outcome unknown
          TooManyRedirects         a redirect loop; never retried
      HTTPStatusError              .status, .response, .request_id, .body (redacted, truncated)
        BadRequestError 400, AuthenticationError 401, PermissionDeniedError 403,
        NotFoundError 404, ConflictError 409, UnprocessableEntityError 422,
        RateLimitError 429, ServerError 5xx        (.retry_after: the server's advised wait)
      CircuitOpenError             .retry_at
      RetryBudgetExhausted
      DeadlineExceeded
      RateLimitWaitTooLong         .wait
      BulkheadFull                 too many requests already waiting for a slot
      ResponseValidationError      the body did not match the model
      AuthError                    token endpoint failures
        ReauthRequired             invalid_grant: a person must sign in again
        InvalidClient              invalid_client: the client's own credentials are wrong
      WebhookVerificationError     .reason

Messages never carry secrets: every text that reaches them has passed the client's redactor.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = [
    "AuthError",
    "AuthenticationError",
    "BadRequestError",
    "BulkheadFull",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "ConnectError",
    "ConnectTimeout",
    "DeadlineExceeded",
    "HTTPStatusError",
    "InvalidClient",
    "NetworkError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimitWaitTooLong",
    "ReadTimeout",
    "ReauthRequired",
    "RequestError",
    "ResponseValidationError",
    "RetryBudgetExhausted",
    "ServerError",
    "TetherError",
    "TimeoutError",
    "TooManyRedirects",
    "UnprocessableEntityError",
    "WebhookVerificationError",
    "WebhookVerificationReason",
    "status_error_class",
]


class TetherError(Exception):
    """Root of every error tether raises on purpose."""


class ConfigError(TetherError, ValueError):
    """Bad configuration or API misuse, detected before any I/O."""


class RequestError(TetherError):
    """The exchange failed below HTTP: no status line was received."""

    #: Whether the request may have reached the server. False means retrying is always safe.
    sent: ClassVar[bool] = True
    #: Whether trying again could help at all; False for failures that would only repeat.
    retryable: ClassVar[bool] = True

    def __init__(self, message: str, *, request: Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class ConnectError(RequestError):
    """No connection was established, so the server never saw the request."""

    sent = False


class TimeoutError(RequestError):
    """An attempt ran out of time."""


class ConnectTimeout(TimeoutError):
    """Connecting took too long; the request was never sent."""

    sent = False


class ReadTimeout(TimeoutError):
    """The request was sent but the response did not arrive in time; the outcome is unknown."""


class NetworkError(RequestError):
    """The connection failed after the request was sent; the outcome is unknown."""


class TooManyRedirects(NetworkError):
    """The server kept redirecting past `max_redirects`; repeating the call would loop again."""

    retryable = False


class HTTPStatusError(TetherError):
    """The server answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        response: Response,
        body: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.response = response
        #: A redacted, truncated excerpt of the response body.
        self.body = body
        #: Seconds the server advised waiting before trying again, when it said so.
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def request(self) -> Request | None:
        return self.response.request

    @property
    def request_id(self) -> str | None:
        return self.response.request_id


class BadRequestError(HTTPStatusError):
    """400 Bad Request."""


class AuthenticationError(HTTPStatusError):
    """401 Unauthorized: the credentials were missing or rejected."""


class PermissionDeniedError(HTTPStatusError):
    """403 Forbidden."""


class NotFoundError(HTTPStatusError):
    """404 Not Found."""


class ConflictError(HTTPStatusError):
    """409 Conflict."""


class UnprocessableEntityError(HTTPStatusError):
    """422 Unprocessable Content."""


class RateLimitError(HTTPStatusError):
    """429 Too Many Requests; `.retry_after` holds the server's advised wait when it gave one."""


class ServerError(HTTPStatusError):
    """A 5xx status; `.retry_after` holds the server's advised wait when it gave one."""


_STATUS_CLASSES: dict[int, type[HTTPStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status: int) -> type[HTTPStatusError]:
    """The most specific exception class for an error status."""
    if status >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status, HTTPStatusError)


class CircuitOpenError(TetherError):
    """The circuit for this host is open; no request was sent."""

    def __init__(self, message: str, *, retry_at: float) -> None:
        super().__init__(message)
        #: Monotonic time at which the circuit admits a probe again.
        self.retry_at = retry_at


class RetryBudgetExhausted(TetherError):
    """A retry was warranted but this client has spent its retry budget for the host.

    The last failure is the `__cause__`.
    """


class DeadlineExceeded(TetherError):
    """The call's total time ran out; the last failure is the `__cause__`."""


class RateLimitWaitTooLong(TetherError):
    """Waiting for the client-side rate limit would take longer than allowed."""

    def __init__(self, message: str, *, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


class BulkheadFull(TetherError):
    """The concurrency limit's queue is full; the request was not sent."""


class ResponseValidationError(TetherError):
    """The response body did not match the expected model."""

    def __init__(self, message: str, *, response: Response) -> None:
        super().__init__(message)
        self.response = response


class AuthError(TetherError):
    """Obtaining or refreshing a credential failed at the token endpoint."""


class ReauthRequired(AuthError):
    """The grant is no longer valid (`invalid_grant`): a person must authorize again."""


class InvalidClient(AuthError):
    """The client's own credentials were rejected (`invalid_client`)."""


class WebhookVerificationReason(enum.StrEnum):
    """Why a webhook failed verification."""

    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    BAD_TIMESTAMP = "bad_timestamp"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    NO_MATCHING_SIGNATURE = "no_matching_signature"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    BAD_SECRET = "bad_secret"  # noqa: S105 - a reason code, not a password


class WebhookVerificationError(TetherError):
    """A webhook's signature or timestamp did not verify."""

    def __init__(self, reason: WebhookVerificationReason, message: str | None = None) -> None:
        super().__init__(message or reason.value)
        self.reason = reason
