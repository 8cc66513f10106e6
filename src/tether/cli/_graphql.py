"""`tether graphql INTEGRATION QUERY [--var k=v]`: run a GraphQL query through the pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tether._graphql import GraphQLError
from tether._graphql import graphql as run_graphql
from tether.cli._support import (
    ExitCode,
    complete_integration,
    fail,
    guarded,
    parse_assignments,
    run_async,
)
from tether.spec import Integration

__all__ = ["graphql"]


async def _run(
    integration: Integration,
    query: str,
    variables: dict[str, Any],
    path: str,
    operation: str | None,
) -> Any:
    async with integration.client() as client:
        return await run_graphql(client, query, variables, path=path, operation_name=operation)


def graphql(
    ctx: typer.Context,
    *,
    integration: Annotated[
        str,
        typer.Argument(
            help="An integration of the spec, or a preset.", autocompletion=complete_integration
        ),
    ],
    query: Annotated[str, typer.Argument(help="The query text, or @FILE to read it from a file.")],
    var: Annotated[
        list[str] | None,
        typer.Option("--var", "-v", help="A variable: k=v (a string) or k:=JSON. Repeatable."),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            help="The GraphQL endpoint. Default: the integration's graphql_path, else /graphql."
        ),
    ] = None,
    operation: Annotated[
        str | None, typer.Option(help="The operation to run, if QUERY has several.")
    ] = None,
    region: Annotated[str | None, typer.Option(help="Use this region's base URL.")] = None,
) -> None:
    """Run QUERY against INTEGRATION's GraphQL endpoint and print `data` as JSON.

    An `errors` array in the answer exits 1 and prints each error (messages redacted).
    """
    with guarded(ctx) as current:
        variables = parse_assignments(var, what="variable")
        text = query
        if query.startswith("@"):
            text = Path(query[1:]).read_text(encoding="utf-8")
        target = current.integration(integration, region=region)
        endpoint = path or target.spec.graphql_path or "/graphql"
        try:
            data = run_async(_run(target, text, variables, endpoint, operation))
        except GraphQLError as exc:
            if current.debug:
                raise
            details = "\n".join(
                f"  - {e.get('message', e)}"
                + (
                    f" (path {'.'.join(map(str, e['path']))})"
                    if isinstance(e.get("path"), list)
                    else ""
                )
                for e in exc.errors
            )
            fail(f"{exc}\n{details}", code=ExitCode.ERROR, redactor=current.redactor)
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
