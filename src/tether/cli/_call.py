"""`tether call INTEGRATION ENDPOINT key=value ... [--all]`: one request, or a whole export."""

from __future__ import annotations

import contextlib
import contextvars
import enum
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tether._client import decode_json
from tether._clock import SystemClock
from tether._core._pagination import get_path
from tether._errors import ConfigError
from tether._observe import RetryEvent
from tether.cli._support import (
    UsageProblem,
    complete_endpoint,
    complete_integration,
    guarded,
    parse_assignments,
    run_async,
    stderr,
)
from tether.spec import Integration

__all__ = ["Format", "Stats", "call"]


class Format(enum.StrEnum):
    json = "json"
    jsonl = "jsonl"
    table = "table"


_retry_pending: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tether_cli_retry_pending", default=False
)


@dataclass
class Stats:
    """What a call cost: pages, items, requests, retries and rate-limit waits."""

    pages: int = 0
    items: int = 0
    requests: int = 0
    retries: int = 0
    rate_waits: int = 0
    rate_wait_seconds: float = 0.0

    def on_retry(self, event: RetryEvent) -> None:
        self.retries += 1
        # The retry policy sleeps right after telling us; that sleep is not a rate-limit wait.
        _retry_pending.set(True)

    def on_response(self, _: object) -> None:
        self.requests += 1

    def summary(self, elapsed: float, *, paginated: bool) -> str:
        def plural(n: int, word: str, words: str | None = None) -> str:
            return f"{n} {word if n == 1 else (words or word + 's')}"

        parts = []
        if paginated:
            parts += [plural(self.pages, "page"), plural(self.items, "item")]
        parts.append(plural(self.requests, "request"))
        parts.append(plural(self.retries, "retry", "retries"))
        waits = plural(self.rate_waits, "rate-limit wait")
        if self.rate_waits:
            waits += f" ({self.rate_wait_seconds:.1f} s)"
        parts.append(waits)
        return ", ".join(parts) + f" in {elapsed:.1f} s"


class CountingClock(SystemClock):
    """The system clock, counting the waits that are not retry backoff: rate-limit slots and
    server-advised pauses."""

    __slots__ = ("stats",)

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    async def sleep(self, seconds: float) -> None:
        if _retry_pending.get():
            _retry_pending.set(False)
        elif seconds > 0:
            self.stats.rate_waits += 1
            self.stats.rate_wait_seconds += seconds
        await super().sleep(seconds)


@contextlib.contextmanager
def _target(output: Path | None) -> Iterator[IO[str]]:
    """stdout, or `output` written through `output.partial` and renamed only on success, so
    a failed export never looks complete."""
    if output is None:
        yield sys.stdout
        return
    partial = output.with_name(output.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(output)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _table(rows: list[Any], handle: IO[str]) -> None:
    console = Console(file=handle, highlight=False, soft_wrap=False, width=200)
    table = Table(show_lines=False)
    if rows and all(isinstance(r, dict) for r in rows):
        columns: list[str] = []
        for row in rows[:100]:
            columns += [k for k in row if k not in columns]
        columns = columns[:12]
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
    else:
        table.add_column("value")
        for row in rows:
            table.add_row(_cell(row))
    console.print(table)


class _Writer:
    """Streams items in the chosen format; a table is drawn once all rows are in."""

    def __init__(self, handle: IO[str], fmt: Format) -> None:
        self.handle = handle
        self.format = fmt
        self.count = 0
        self.rows: list[Any] = []

    def start(self) -> None:
        if self.format is Format.json:
            self.handle.write("[")

    def item(self, value: Any) -> None:
        if self.format is Format.jsonl:
            self.handle.write(json.dumps(value, ensure_ascii=False) + "\n")
        elif self.format is Format.json:
            self.handle.write(
                ("," if self.count else "") + "\n  " + json.dumps(value, ensure_ascii=False)
            )
        else:
            self.rows.append(value)
        self.count += 1

    def finish(self) -> None:
        if self.format is Format.json:
            self.handle.write("\n]\n" if self.count else "]\n")
        elif self.format is Format.table:
            _table(self.rows, self.handle)


def _items_of(integration: Integration, endpoint: str, body: Any) -> list[Any] | None:
    paginator = integration.paginator(endpoint)
    if paginator is None:
        return body if isinstance(body, list) else None
    found = get_path(body, paginator.items)
    return found if isinstance(found, list) else None


async def _one(
    integration: Integration,
    *,
    endpoint: str,
    args: dict[str, Any],
    fmt: Format,
    handle: IO[str],
    stats: Stats,
    **options: Any,
) -> None:
    async with integration.client(**options) as client:
        response = await integration.request(client, endpoint, **args)
    content_type = response.headers.get("content-type", "")
    if not response.content:
        return
    if "json" not in content_type:
        handle.write(response.text + ("" if response.text.endswith("\n") else "\n"))
        return
    model = integration.model(endpoint)
    paginated = integration.paginator(endpoint) is not None
    body = decode_json(response, None if paginated else model)
    if fmt is Format.json:
        handle.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        return
    items = _items_of(integration, endpoint, body)
    writer = _Writer(handle, fmt)
    for item in items if items is not None else [body]:
        writer.item(item)
    writer.finish()


async def _all(
    integration: Integration,
    *,
    endpoint: str,
    args: dict[str, Any],
    fmt: Format,
    handle: IO[str],
    stats: Stats,
    progress: bool,
    max_pages: int | None,
    max_items: int | None,
    **options: Any,
) -> None:
    writer = _Writer(handle, fmt)
    # Forced when asked for: --progress on a pipe still draws (CI logs, tests).
    console = Console(stderr=True, force_terminal=True) if progress else stderr()
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[pages]} pages, {task.fields[items]} items"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not progress,
    )
    async with integration.client(**options) as client:
        walk = integration.paginate(
            client, endpoint, max_pages=max_pages, max_items=max_items, **args
        )
        writer.start()
        with bar:
            task = bar.add_task(f"{integration.name} {endpoint}", pages=0, items=0)
            async for page in walk.pages():
                stats.pages += 1
                for item in page.items:
                    writer.item(item)
                stats.items += len(page.items)
                bar.update(task, pages=stats.pages, items=stats.items)
        writer.finish()


def call(
    ctx: typer.Context,
    *,
    integration: Annotated[
        str,
        typer.Argument(
            help="An integration of the spec, or a preset.", autocompletion=complete_integration
        ),
    ],
    endpoint: Annotated[
        str,
        typer.Argument(
            help="One of the integration's endpoints.", autocompletion=complete_endpoint
        ),
    ],
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="Arguments: key=value (a string) or key:=JSON. They fill the path's "
            "{placeholders}; the rest go to the query or the body.",
            show_default=False,
        ),
    ] = None,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Follow the pagination to the end and output every item.")
    ] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.json,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to FILE instead of stdout.", show_default=False),
    ] = None,
    region: Annotated[str | None, typer.Option(help="Use this region's base URL.")] = None,
    max_pages: Annotated[
        int | None, typer.Option(min=1, help="With --all: stop after N pages.")
    ] = None,
    max_items: Annotated[
        int | None, typer.Option(min=1, help="With --all: stop after N items.")
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress bar with --all. Default: when stderr is a terminal.",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary line.")] = False,
) -> None:
    """Call ENDPOINT of INTEGRATION and print the answer (every item with --all).

    A summary on stderr counts pages, items, requests, retries and rate-limit waits.
    """
    with guarded(ctx) as current:
        values = parse_assignments(args)
        target = current.integration(integration, region=region)
        try:
            target.endpoint(endpoint)
            target.build_call(endpoint, values)
            if all_pages and target.paginator(endpoint) is None:
                raise UsageProblem(f"{integration} {endpoint} is not paginated", "leave out --all")
        except ConfigError as exc:
            raise UsageProblem(
                str(exc), f"`tether spec check` lists {integration}'s endpoints"
            ) from None
        stats = Stats()
        options = {
            "clock": CountingClock(stats),
            "on_retry": stats.on_retry,
            "on_response": stats.on_response,
        }
        show_progress = stderr().is_terminal if progress is None else progress
        started = time.monotonic()
        with _target(output) as handle:
            if all_pages:
                run_async(
                    _all(
                        target, endpoint=endpoint, args=values, fmt=fmt, handle=handle,
                        stats=stats, progress=show_progress and not quiet,
                        max_pages=max_pages, max_items=max_items,
                        **options,
                    )
                )  # fmt: skip
            else:
                run_async(
                    _one(
                        target, endpoint=endpoint, args=values, fmt=fmt, handle=handle,
                        stats=stats, **options,
                    )
                )  # fmt: skip
        if not quiet:
            summary = stats.summary(time.monotonic() - started, paginated=all_pages)
            stderr().print(Text(f"{integration} {endpoint}: {summary}", style="dim"))
