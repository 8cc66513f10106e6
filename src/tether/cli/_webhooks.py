"""`tether webhooks ...`: inspect and repair the inbox, and debug a provider's signatures."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from tether._errors import ConfigError, TetherError, WebhookVerificationError
from tether._redact import Redactor
from tether.stores import EventStatus, InboxEvent, InboxStore, open_inbox_store
from tether.webhooks._api import SCHEMES, sign, verify

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(
    name="webhooks",
    help=(
        "Inspect and repair the webhook inbox (list, show, replay, dead, purge), and check or "
        "make a provider's signatures by hand (verify, sign)."
    ),
    no_args_is_help=True,
)

_DB_HELP = (
    "The inbox store: a SQLite file path, sqlite:///path, or a postgresql:// URL. "
    "Defaults to $TETHER_DB, else tether.db."
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_EXIT_ERROR = 2
_EXIT_NOT_VERIFIED = 1


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(_EXIT_ERROR)


@contextmanager
def _readable_errors(location: str | None = None) -> Iterator[None]:
    """Turn every expected failure into one line on stderr and exit status 2."""
    redactor = Redactor()
    try:
        yield
    except (TetherError, OSError, ValueError) as exc:
        text = str(exc) or type(exc).__name__
        if location:
            # A connection URL may carry a password; it never reaches the terminal.
            text = text.replace(location, redactor.url(location))
        _fail(text.splitlines()[0])


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _store(db: str, schema: str) -> InboxStore:
    if "://" not in db and not Path(db).exists():
        _fail(f"no inbox database at {db} (give --db or set TETHER_DB)")
    return open_inbox_store(db, schema=schema)


async def _with_store(db: str, schema: str, use: Callable[[InboxStore], Awaitable[T]]) -> T:
    store = _store(db, schema)
    await store.open()
    try:
        return await use(store)
    finally:
        await store.close()


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _summary(event: InboxEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "source": event.source,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "status": event.status.value,
        "attempts": event.attempts,
        "received_at": _when(event.received_at),
        "next_attempt_at": (
            _when(event.next_attempt_at) if event.status is EventStatus.PENDING else None
        ),
        "completed_at": _when(event.completed_at) if event.completed_at else None,
        "last_error": event.last_error,
    }


def _status(value: str | None) -> EventStatus | None:
    if value is None:
        return None
    try:
        return EventStatus(value.lower())
    except ValueError:
        known = ", ".join(s.value for s in EventStatus)
        _fail(f"unknown status {value!r}; known: {known}")


def _print_table(events: list[InboxEvent], *, errors: bool = False) -> None:
    from rich.console import Console  # noqa: PLC0415 - only table output needs rich
    from rich.table import Table  # noqa: PLC0415

    if not events:
        typer.echo("no events")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("id", "source", "event id", "type", "status", "tries", "received"):
        table.add_column(column, overflow="fold")
    if errors:
        table.add_column("last error", overflow="fold")
    for event in events:
        row = [
            str(event.id),
            event.source,
            event.event_id,
            event.event_type or "-",
            event.status.value,
            str(event.attempts),
            _when(event.received_at),
        ]
        if errors:
            row.append(event.last_error or "-")
        table.add_row(*row)
    Console(soft_wrap=True).print(table)


DbOption = typer.Option("tether.db", "--db", envvar="TETHER_DB", help=_DB_HELP)
SchemaOption = typer.Option(
    "public", "--schema", envvar="TETHER_DB_SCHEMA", help="The PostgreSQL schema of the inbox."
)


@app.command("list")
def list_events(
    *,
    source: str | None = typer.Option(None, "--source", "-s", help="Only this source."),
    status: str | None = typer.Option(
        None, "--status", help="Only this status: pending, delivered, ignored or dead."
    ),
    event_type: str | None = typer.Option(None, "--type", "-t", help="Only this event type."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="At most this many events."),
    before: int | None = typer.Option(
        None, "--before", help="Only events with a smaller id: the next page after a listing."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    db: str = DbOption,
    schema: str = SchemaOption,
) -> None:
    """List stored webhook events, newest first."""
    chosen = _status(status)
    with _readable_errors(db):
        events = _run(
            _with_store(
                db,
                schema,
                lambda store: store.list(
                    source=source,
                    status=chosen,
                    event_type=event_type,
                    before_id=before,
                    limit=limit,
                ),
            )
        )
    if as_json:
        for event in events:
            typer.echo(json.dumps(_summary(event)))
        return
    _print_table(events)


@app.command()
def dead(
    *,
    source: str | None = typer.Option(None, "--source", "-s", help="Only this source."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="At most this many events."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    db: str = DbOption,
    schema: str = SchemaOption,
) -> None:
    """List dead-lettered events with their last error; replay them with `replay --dead`."""
    with _readable_errors(db):
        events = _run(
            _with_store(
                db,
                schema,
                lambda store: store.list(source=source, status=EventStatus.DEAD, limit=limit),
            )
        )
    if as_json:
        for event in events:
            typer.echo(json.dumps(_summary(event)))
        return
    _print_table(events, errors=True)


@app.command()
def show(
    *,
    event: str = typer.Argument(
        ..., help="The event's id in the store (from `list`), or its event id with --source."
    ),
    source: str | None = typer.Option(
        None, "--source", "-s", help="Look the event up by this source and its event id."
    ),
    body: bool = typer.Option(True, "--body/--no-body", help="Print the body too."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    db: str = DbOption,
    schema: str = SchemaOption,
) -> None:
    """Show one event: its state, headers, verification result and body."""
    if source is None and not event.isdigit():
        _fail("give the numeric id from `list`, or the event id with --source")

    async def find(store: InboxStore) -> InboxEvent | None:
        if source is not None:
            return await store.find(source, event)
        return await store.get(int(event))

    with _readable_errors(db):
        found = _run(_with_store(db, schema, find))
    if found is None:
        _fail(f"no event {event}" + (f" from {source}" if source else ""))
    details = _summary(found)
    details["handled"] = list(found.handled)
    details["verification"] = {
        "scheme": found.scheme,
        "secret_index": found.secret_index,
        "signed_at": found.signed_at,
        "msg_id": found.msg_id,
    }
    details["headers"] = [list(pair) for pair in found.headers]
    text = found.body.decode("utf-8", "replace")
    if as_json:
        if body:
            details["body"] = text
        typer.echo(json.dumps(details, indent=2))
        return
    for key, value in details.items():
        if key == "headers":
            typer.echo("headers:")
            for name, header in found.headers:
                typer.echo(f"  {name}: {header}")
        elif isinstance(value, dict):
            typer.echo(f"{key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            typer.echo(f"{key}: {value if value is not None else '-'}")
    if body:
        typer.echo(f"body ({len(found.body)} bytes):")
        typer.echo(text)


@app.command()
def replay(
    *,
    ids: Annotated[
        list[int] | None, typer.Argument(help="Ids (from `list`) of the events to replay.")
    ] = None,
    all_dead: bool = typer.Option(False, "--dead", help="Replay every dead-lettered event."),
    status: str | None = typer.Option(
        None, "--status", help="Replay every event in this status (delivered, ignored, dead)."
    ),
    source: str | None = typer.Option(
        None, "--source", "-s", help="With --dead or --status: only this source."
    ),
    db: str = DbOption,
    schema: str = SchemaOption,
) -> None:
    """Make finished events pending again, so every handler runs on them again.

    The attempt count starts over; a running dispatcher picks them up at its next look.
    """
    chosen = EventStatus.DEAD if all_dead else _status(status)
    if ids and chosen is not None:
        _fail("give ids, or --dead / --status, not both")
    if not ids and chosen is None:
        _fail("say what to replay: ids, --dead or --status")
    if chosen is EventStatus.PENDING:
        _fail("pending events are waiting to be dispatched already")
    now = time.time()
    with _readable_errors(db):
        moved = _run(
            _with_store(
                db,
                schema,
                lambda store: store.replay(ids=ids or None, status=chosen, source=source, now=now),
            )
        )
    typer.echo(f"{moved} event(s) pending again")


def _duration(text: str) -> float:
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        _fail(f"{text!r} is not a duration such as 90s, 30m, 12h, 7d or 2w")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@app.command()
def purge(
    *,
    older_than: str = typer.Option(
        ..., "--older-than", help="Delete events received longer ago than this: 12h, 7d, 2w."
    ),
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help=(
                "Which finished statuses to delete (repeatable; default delivered and ignored); "
                "pending events are never purged."
            ),
        ),
    ] = None,
    source: str | None = typer.Option(None, "--source", "-s", help="Only this source."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    db: str = DbOption,
    schema: str = SchemaOption,
) -> None:
    """Delete old finished events. Their ids are forgotten too: a redelivery would be new."""
    age = _duration(older_than)
    chosen = status or ["delivered", "ignored"]
    statuses = [s for s in (_status(value) for value in chosen) if s is not None]
    if EventStatus.PENDING in statuses:
        _fail("pending events are never purged: they have not been handled")
    names = ", ".join(s.value for s in statuses)
    if not yes and not typer.confirm(
        f"Delete {names} events received more than {older_than} ago?", default=False
    ):
        raise typer.Exit(1)
    before = time.time() - age
    with _readable_errors(db):
        deleted = _run(
            _with_store(
                db,
                schema,
                lambda store: store.purge(before=before, statuses=statuses, source=source),
            )
        )
    typer.echo(f"{deleted} event(s) deleted")


# -- verify / sign -------------------------------------------------------------------------------


def _secrets(env: list[str], files: list[Path]) -> list[str]:
    found: list[str] = []
    for name in env:
        value = os.environ.get(name)
        if not value:
            _fail(f"the environment variable {name} is not set")
        found.append(value)
    for path in files:
        try:
            found.append(path.read_text().strip())
        except OSError as exc:
            _fail(f"cannot read {path}: {exc.strerror}")
    if found:
        return found
    if sys.stdin.isatty():
        # Not echoed, and not left in the shell's history or the process list.
        return [typer.prompt("Signing secret", hide_input=True)]
    _fail("give the secret with --secret-env NAME or --secret-file PATH")


def _body(path: str | None, text: str | None) -> bytes:
    if (path is None) == (text is None):
        _fail("give the body with exactly one of --body-file PATH ('-' for stdin) or --body")
    if text is not None:
        return text.encode()
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(str(path)).read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")


def _options(pairs: list[str]) -> dict[str, object]:
    options: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _fail(f"option {pair!r} is not NAME=VALUE")
        options[name.strip()] = value
    return options


def _headers(lines: list[str], files: list[Path]) -> list[tuple[str, str]]:
    raw = list(lines)
    for path in files:
        try:
            text = path.read_text()
        except OSError as exc:
            _fail(f"cannot read {path}: {exc.strerror}")
        if text.lstrip().startswith("{"):
            raw.extend(f"{k}: {v}" for k, v in json.loads(text).items())
        else:
            # Raw header lines as copied from a request log; a request line is skipped.
            raw.extend(line for line in text.splitlines() if ":" in line and " HTTP/" not in line)
    pairs = []
    for line in raw:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            _fail(f"header {line!r} is not 'Name: value'")
        pairs.append((name.strip(), value.strip()))
    return pairs


class _Pairs(dict[str, str]):
    """Headers as a mapping whose items() keeps repeats, as a web framework hands them over."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self._pairs = pairs

    def items(self) -> Any:
        return list(self._pairs)


def _scheme(name: str) -> str:
    if name not in SCHEMES:
        _fail(f"unknown scheme {name!r}; known schemes: {', '.join(SCHEMES)}")
    return name


@app.command("verify")
def verify_command(
    *,
    scheme: str = typer.Argument(..., help=f"The signature scheme: {', '.join(SCHEMES)}."),
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="A received header, 'Name: value' (repeatable)."),
    ] = None,
    headers_file: Annotated[
        list[Path] | None,
        typer.Option("--headers-file", help="Headers as 'Name: value' lines or a JSON object."),
    ] = None,
    body_file: str | None = typer.Option(
        None, "--body-file", help="The raw body as received; '-' reads stdin."
    ),
    body_text: str | None = typer.Option(None, "--body", help="The body, as text."),
    event: int | None = typer.Option(
        None, "--event", help="Take headers and body from this stored event (id from `list`)."
    ),
    secret_env: Annotated[
        list[str] | None,
        typer.Option(
            "--secret-env", help="Name of an environment variable holding a secret (repeatable)."
        ),
    ] = None,
    secret_file: Annotated[
        list[Path] | None,
        typer.Option("--secret-file", help="A file holding a secret (repeatable)."),
    ] = None,
    tolerance: float = typer.Option(300, "--tolerance", help="Seconds the timestamp may be off."),
    no_tolerance: bool = typer.Option(
        False, "--no-tolerance", help="Do not check the timestamp's age (old deliveries)."
    ),
    now: float | None = typer.Option(None, "--now", help="Check as of this Unix time."),
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="A scheme option NAME=VALUE, e.g. url=... for twilio."),
    ] = None,
    db: str = DbOption,
    schema: str = SchemaOption,
) -> None:
    """Check a delivery's signature as the inbox would, and say why it fails if it does.

    Secrets come from --secret-env, --secret-file or a hidden prompt, never the command line.

    Exit status: 0 verified, 1 not verified, 2 a mistake in the call.
    """
    name = _scheme(scheme)
    options = _options(option or [])
    if event is not None:
        with _readable_errors(db):
            stored = _run(_with_store(db, schema, lambda store: store.get(event)))
        if stored is None:
            _fail(f"no event {event}")
        pairs, body = list(stored.headers), stored.body
    else:
        pairs = _headers(header or [], headers_file or [])
        body = _body(body_file, body_text)
    secrets = _secrets(secret_env or [], secret_file or [])
    with _readable_errors():
        try:
            result = verify(
                name,
                secret=secrets,
                headers=_Pairs(pairs),
                body=body,
                now=now,
                tolerance=None if no_tolerance else tolerance,
                **options,
            )
        except WebhookVerificationError as exc:
            typer.echo(f"not verified: {exc.reason.value}: {exc}")
            raise typer.Exit(_EXIT_NOT_VERIFIED) from None
        except ConfigError as exc:
            _fail(str(exc))
    typer.echo(
        f"verified: scheme={result.scheme} secret={result.secret_index} "
        f"timestamp={result.timestamp if result.timestamp is not None else '-'} "
        f"msg_id={result.msg_id or '-'}"
    )


@app.command("sign")
def sign_command(
    *,
    scheme: str = typer.Argument(..., help=f"The signature scheme: {', '.join(SCHEMES)}."),
    body_file: str | None = typer.Option(
        None, "--body-file", help="The exact body to send; '-' reads stdin."
    ),
    body_text: str | None = typer.Option(None, "--body", help="The body, as text."),
    secret_env: Annotated[
        list[str] | None,
        typer.Option(
            "--secret-env", help="Name of an environment variable holding a secret (repeatable)."
        ),
    ] = None,
    secret_file: Annotated[
        list[Path] | None,
        typer.Option("--secret-file", help="A file holding a secret (repeatable)."),
    ] = None,
    msg_id: str | None = typer.Option(
        None, "--msg-id", help="The event id (required by 'standard')."
    ),
    timestamp: int | None = typer.Option(
        None, "--timestamp", help="Unix seconds to sign; default now."
    ),
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="A scheme option NAME=VALUE, e.g. url=... for twilio."),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print the headers as a JSON object."),
    curl: str | None = typer.Option(
        None, "--curl", help="Print a curl command that posts the body to this URL."
    ),
) -> None:
    """Print the headers that make a body verify: to test a receiver by hand."""
    name = _scheme(scheme)
    options = _options(option or [])
    body = _body(body_file, body_text)
    secrets = _secrets(secret_env or [], secret_file or [])
    with _readable_errors():
        headers = sign(
            name,
            secret=secrets if len(secrets) > 1 else secrets[0],
            body=body,
            msg_id=msg_id,
            timestamp=timestamp,
            **options,
        )
    if as_json:
        typer.echo(json.dumps(headers, indent=2))
    elif curl is not None:
        parts = ["curl", "-X", "POST", _quote(curl)]
        for key, value in headers.items():
            parts += ["-H", _quote(f"{key}: {value}")]
        source = "@-" if body_file == "-" else f"@{body_file}" if body_file else body.decode()
        parts += ["--data-binary", _quote(source)]
        typer.echo(" ".join(parts))
    else:
        for key, value in headers.items():
            typer.echo(f"{key}: {value}")


def _quote(text: str) -> str:
    import shlex  # noqa: PLC0415 - only --curl needs it

    return shlex.quote(text)
