"""GraphQL over HTTP: one POST through the client pipeline; an `errors` array raises."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tether._errors import ResponseValidationError, TetherError
from tether._redact import Redactor
from tether._status import status_error

if TYPE_CHECKING:
    from tether._client import Client
    from tether._models import Response

__all__ = ["GraphQLError", "graphql"]

#: Errors kept on the exception; a server can return thousands.
_MAX_ERRORS = 20
_MAX_MESSAGE = 300


def _redacted(value: Any, redactor: Redactor, depth: int = 0) -> Any:
    # Error messages often echo the variables they were given, and variables may hold secrets.
    if depth > 8:
        return "..."
    if isinstance(value, str):
        return redactor.text(value[:_MAX_MESSAGE])
    if isinstance(value, Mapping):
        return {str(k): _redacted(v, redactor, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, redactor, depth + 1) for v in value[:_MAX_ERRORS]]
    return value


class GraphQLError(TetherError):
    """The server answered with a GraphQL `errors` array.

    `.errors` holds the error objects (messages redacted and truncated, at most 20), `.data`
    whatever partial data came with them, `.response` the HTTP response.
    """

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]],
        data: Any,
        response: Response,
    ) -> None:
        super().__init__(message)
        self.errors = errors
        self.data = data
        self.response = response

    @property
    def status(self) -> int:
        return self.response.status


def _message(errors: list[dict[str, Any]]) -> str:
    first = errors[0] if errors else {}
    text = first.get("message")
    text = text if isinstance(text, str) and text else "no message"
    path = first.get("path")
    if isinstance(path, list) and path:
        text += f" (at {'.'.join(map(str, path))})"
    more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
    return f"GraphQL error: {text}{more}"


async def graphql(
    client: Client,
    query: str,
    variables: Mapping[str, Any] | None = None,
    *,
    path: str = "/graphql",
    operation_name: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """Run a GraphQL query or mutation and return its `data`.

    Raises `GraphQLError` when the answer carries an `errors` array (even with HTTP 200, as
    GraphQL servers do), the `HTTPStatusError` subclass for an error status without one, and
    `ResponseValidationError` for a body that is not a GraphQL answer.
    """
    body: dict[str, Any] = {"query": query}
    if variables:
        body["variables"] = dict(variables)
    if operation_name is not None:
        body["operationName"] = operation_name
    sent_headers = {"Accept": "application/graphql-response+json, application/json"}
    sent_headers.update(headers or {})
    # Statuses are judged here: a GraphQL server's 400 carries the errors worth reporting.
    response = await client.post(path, json=body, headers=sent_headers, raise_for_status=False)
    redactor = response.request.redactor if response.request is not None else Redactor()
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if isinstance(answer, Mapping) and answer.get("errors"):
        raw = answer["errors"]
        errors = [
            _redacted(e, redactor) if isinstance(e, Mapping) else {"message": redactor.text(str(e))}
            for e in (raw if isinstance(raw, list) else [raw])[:_MAX_ERRORS]
        ]
        raise GraphQLError(
            _message(errors),
            errors=errors,
            data=answer.get("data"),
            response=response,
        )
    if response.status >= 400:
        raise status_error(response, now_wall=client._clock.time())
    if not isinstance(answer, Mapping) or "data" not in answer:
        where = response.request.redacted_url() if response.request is not None else path
        raise ResponseValidationError(
            f"the GraphQL answer from {where} has neither data nor errors", response=response
        )
    return answer["data"]
