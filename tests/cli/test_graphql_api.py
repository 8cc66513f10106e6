"""`tether.graphql()`: data, GraphQL errors with any status, and answers that are not GraphQL."""

from __future__ import annotations

import pytest

import tether
from tether._graphql import GraphQLError, graphql
from tether.testing import MockAPI, Reply

SECRET = "canary-graphql-77"


async def test_returns_data_and_sends_query_variables_and_operation() -> None:
    """The body carries query, variables and operationName; `data` comes back."""
    api = MockAPI()
    stub = api.stub(
        "POST",
        "/graphql",
        Reply(json={"data": {"node": {"id": "1"}}}),
        json={"query": "query Q($id: ID!) { node(id: $id) { id } }", "variables": {"id": "1"},
              "operationName": "Q"},
    )  # fmt: skip
    async with api.client(base_url="https://api.example.com") as client:
        data = await graphql(
            client,
            "query Q($id: ID!) { node(id: $id) { id } }",
            {"id": "1"},
            operation_name="Q",
        )
    assert data == {"node": {"id": "1"}}
    assert stub.call_count == 1


@pytest.mark.parametrize("status", [200, 400, 500])
async def test_errors_array_raises_whatever_the_status(status: int) -> None:
    """An `errors` array raises GraphQLError with partial data and the HTTP status."""
    api = MockAPI()
    api.stub(
        "POST",
        "/graphql",
        Reply(status, json={"data": {"a": 1}, "errors": [{"message": "b failed", "path": ["b"]}]}),
    )
    async with api.client(base_url="https://api.example.com", retry=None) as client:
        with pytest.raises(GraphQLError) as caught:
            await graphql(client, "{ a b }")
    assert caught.value.data == {"a": 1}
    assert caught.value.status == status
    assert str(caught.value) == "GraphQL error: b failed (at b)"
    assert isinstance(caught.value, tether.TetherError)


async def test_error_messages_are_redacted() -> None:
    """A secret the server echoes in an error message is replaced in .errors and the text."""
    api = MockAPI()
    api.stub(
        "POST",
        "/graphql",
        Reply(json={"errors": [{"message": f"bad token {SECRET}", "extensions": {"t": SECRET}}]}),
    )
    async with api.client(
        base_url="https://api.example.com", auth=tether.auth.Bearer(SECRET)
    ) as client:
        with pytest.raises(GraphQLError) as caught:
            await graphql(client, "{ a }")
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.errors)


async def test_error_status_without_errors_raises_the_status_error() -> None:
    """A 502 without a GraphQL body is the usual ServerError."""
    api = MockAPI()
    api.stub("POST", "/graphql", Reply(502, body="bad gateway"))
    async with api.client(base_url="https://api.example.com", retry=None) as client:
        with pytest.raises(tether.ServerError):
            await graphql(client, "{ a }")


async def test_an_answer_without_data_or_errors_is_invalid() -> None:
    """A 200 that is not a GraphQL answer raises ResponseValidationError."""
    api = MockAPI()
    api.stub("POST", "/api/graphql", Reply(json={"hello": "world"}))
    async with api.client(base_url="https://api.example.com") as client:
        with pytest.raises(tether.ResponseValidationError, match="neither data nor errors"):
            await graphql(client, "{ a }", path="/api/graphql")
