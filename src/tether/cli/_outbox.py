"""`tether outbox ...`: endpoints, sending, the attempt log, replay and the dead letter.

The root CLI mounts this as `tether outbox`; `python -m tether.cli._outbox` runs it alone.
Signing secrets are never printed: `endpoints add` and `endpoints secret` write them to a file
created with mode 0600 (`--secret-file`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tether._errors import ConfigError, TetherError
from tether.webhooks._keys import generate_keypair
from tether.webhooks._outbox import Outbox, open_outbox_store
from tether.webhooks._outbox_egress import EgressPolicy
from tether.webhooks._outbox_model import DeliveryStatus, Endpoint, OutboxDelivery

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(
    name="outbox",
    help="Durable outgoing webhooks: endpoints, send, attempts, replay, dead letters, workers.",
    no_args_is_help=True,
)
endpoints_app = typer.Typer(
    name="endpoints", help="List, add, disable, enable, rotate and remove endpoints."
)
app.add_typer(endpoints_app)

Store = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="TETHER_OUTBOX_STORE",
        help="The outbox: a SQLite path, sqlite:///path or postgresql://... URL.",
    ),
]
Schema = Annotated[str, typer.Option(help="PostgreSQL schema of the outbox tables.")]
Prefix = Annotated[str, typer.Option(help="Name prefix of the outbox tables.")]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _run(
    store: str, schema: str, prefix: str, action: Callable[[Outbox], Awaitable[T]], **options: Any
) -> T:
    async def main() -> T:
        outbox = Outbox(open_outbox_store(store, prefix=prefix, schema=schema), **options)
        async with outbox:
            return await action(outbox)

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except TetherError as exc:
        raise _fail(str(exc), 1) from None


def _when(text: str | None) -> float | None:
    """Seconds since the epoch from an ISO 8601 time, epoch seconds or an age like "2h"."""
    if text is None:
        return None
    match = _DURATION.fullmatch(text.strip())
    if match:
        return time.time() - float(match[1]) * _UNITS[match[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(
            f"{text!r} is not a time: use ISO 8601, epoch seconds or an age like 2h"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _iso(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_secret(path: Path, secret: str) -> None:
    # Created with 0600 and never echoed: the secret goes where the receiver's config is made.
    try:
        # No symlink is followed, and a file that existed with a wider mode is narrowed.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise _fail(f"cannot write the secret to {path}: {exc.strerror}") from None
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")


def _endpoint_line(endpoint: Endpoint) -> str:
    state = "enabled" if endpoint.enabled else f"disabled ({endpoint.disabled_reason or '-'})"
    types = ",".join(endpoint.event_types) or "*"
    extras = []
    if endpoint.rate_limit:
        extras.append(f"rate {endpoint.rate_limit}")
    if endpoint.ordered:
        extras.append("ordered")
    if endpoint.failing_since is not None:
        extras.append(f"failing since {_iso(endpoint.failing_since)}")
    suffix = f"  [{'; '.join(extras)}]" if extras else ""
    return f"{endpoint.id}  {state}  {endpoint.url}  types={types}{suffix}"


def _delivery_line(d: OutboxDelivery) -> str:
    last = f"{d.last_status or '-'}"
    when = _iso(d.next_attempt_at if d.status is DeliveryStatus.PENDING else d.completed_at)
    error = f"  {d.last_error}" if d.last_error else ""
    return (
        f"{d.id}  {d.status.value:9} {d.msg_id}  {d.endpoint_id}  {d.event_type}  "
        f"attempts={d.attempts} last={last} at={when}{error}"
    )


# -- endpoints -------------------------------------------------------------------------------


@endpoints_app.callback(invoke_without_command=True)
def endpoints(
    ctx: typer.Context,
    *,
    store: Store = "tether.db",
    schema: Schema = "public",
    prefix: Prefix = "tether_outbox",
    allow: Annotated[
        list[str] | None,
        typer.Option(help="A private network endpoint URLs may name (as for work); repeat."),
    ] = None,
) -> None:
    """List endpoints (the default), or manage one with a subcommand."""
    ctx.obj = (store, schema, prefix, tuple(allow or ()))
    if ctx.invoked_subcommand is not None:
        return
    found = _run(store, schema, prefix, lambda o: o.endpoints())
    if not found:
        typer.echo("no endpoints")
    for endpoint in found:
        typer.echo(_endpoint_line(endpoint))


def _location(ctx: typer.Context) -> tuple[str, str, str]:
    store, schema, prefix, _ = ctx.obj
    return str(store), str(schema), str(prefix)


def _egress(ctx: typer.Context) -> EgressPolicy:
    try:
        return EgressPolicy(allow=ctx.obj[3])
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@endpoints_app.command("list")
def endpoints_list(ctx: typer.Context) -> None:
    """List endpoints."""
    for endpoint in _run(*_location(ctx), lambda o: o.endpoints()):
        typer.echo(_endpoint_line(endpoint))


@endpoints_app.command("add")
def endpoints_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="Where to POST the webhooks.")],
    *,
    endpoint_id: Annotated[str | None, typer.Option("--id", help="An id of your own.")] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="An event type filter; repeat. 'a.*' ok.")
    ] = None,
    header: Annotated[list[str] | None, typer.Option(help="Name: value; repeat.")] = None,
    rate_limit: Annotated[str | None, typer.Option(help="E.g. 50/s.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
    ordered: Annotated[bool, typer.Option(help="Deliver per ordering key in order.")] = False,
    description: Annotated[str, typer.Option(help="A note for people.")] = "",
    ed25519: Annotated[
        bool, typer.Option(help="Sign with a new Ed25519 key (v1a) instead of a whsec_ secret.")
    ] = False,
    secret_file: Annotated[
        Path | None,
        typer.Option(help="Write what the receiver verifies with here (mode 0600)."),
    ] = None,
) -> None:
    """Add an endpoint with a new signing secret (or Ed25519 key)."""
    headers = []
    for item in header or []:
        name, sep, value = item.partition(":")
        if not sep:
            raise _fail(f"--header {item!r}: use 'Name: value'")
        headers.append((name.strip(), value.strip()))

    async def add(outbox: Outbox) -> tuple[Endpoint, str]:
        endpoint = await outbox.add_endpoint(
            url,
            endpoint_id=endpoint_id,
            event_types=event_type or (),
            headers=headers,
            rate_limit=rate_limit,
            timeout=timeout,
            ordered=ordered,
            description=description,
            secret=generate_keypair().secret_key if ed25519 else None,
        )
        return endpoint, await outbox.verification_key(endpoint.id)

    endpoint, secret = _run(*_location(ctx), add, egress=_egress(ctx))
    typer.echo(_endpoint_line(endpoint))
    if secret_file is not None:
        _write_secret(secret_file, secret)
        typer.echo(f"verification key written to {secret_file}")
    else:
        typer.echo(
            "signing secret stored; write the receiver's key to a file with "
            f"`tether outbox endpoints secret {endpoint.id} --secret-file PATH`"
        )


@endpoints_app.command("update")
def endpoints_update(
    ctx: typer.Context,
    endpoint_id: str,
    *,
    url: Annotated[str | None, typer.Option(help="A new URL.")] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="Replace the type filters; repeat.")
    ] = None,
    all_types: Annotated[bool, typer.Option(help="Drop the type filters.")] = False,
    rate_limit: Annotated[str | None, typer.Option(help="E.g. 50/s; 'none' removes it.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
    ordered: Annotated[bool | None, typer.Option("--ordered/--unordered")] = None,
    description: Annotated[str | None, typer.Option(help="A note for people.")] = None,
) -> None:
    """Change an endpoint's settings; those not given stay as they are."""
    types: list[str] | None = [] if all_types else event_type

    async def update(outbox: Outbox) -> Endpoint:
        changes: dict[str, Any] = {
            "url": url,
            "event_types": types,
            "timeout": timeout,
            "ordered": ordered,
            "description": description,
        }
        if rate_limit is not None:
            changes["rate_limit"] = None if rate_limit.lower() == "none" else rate_limit
        return await outbox.update_endpoint(endpoint_id, **changes)

    typer.echo(_endpoint_line(_run(*_location(ctx), update, egress=_egress(ctx))))


@endpoints_app.command("secret")
def endpoints_secret(
    ctx: typer.Context,
    endpoint_id: str,
    secret_file: Annotated[Path, typer.Option(help="Write the key here (mode 0600).")],
) -> None:
    """Write what the endpoint's receiver verifies with to a file (never to the terminal):
    the whsec_ secret, or the whpk_ public key of an Ed25519 endpoint."""
    key = _run(*_location(ctx), lambda o: o.verification_key(endpoint_id))
    _write_secret(secret_file, key)
    typer.echo(f"verification key of {endpoint_id} written to {secret_file}")


@endpoints_app.command("rotate")
def endpoints_rotate(
    ctx: typer.Context,
    endpoint_id: str,
    overlap: Annotated[float, typer.Option(help="Seconds both secrets sign.")] = 86_400.0,
    secret_file: Annotated[
        Path | None, typer.Option(help="Write the new verification key here (mode 0600).")
    ] = None,
) -> None:
    """Rotate an endpoint's signing secret; the old one keeps signing during the overlap."""

    async def rotate(outbox: Outbox) -> str:
        await outbox.rotate_secret(endpoint_id, overlap=overlap)
        return await outbox.verification_key(endpoint_id)

    key = _run(*_location(ctx), rotate)
    if secret_file is not None:
        _write_secret(secret_file, key)
        typer.echo(f"new verification key of {endpoint_id} written to {secret_file}")
    typer.echo(f"rotated; the previous secret signs for another {overlap:g} s")


@endpoints_app.command("disable")
def endpoints_disable(
    ctx: typer.Context,
    endpoint_id: str,
    reason: Annotated[str, typer.Option(help="Recorded on the endpoint.")] = "disabled by hand",
) -> None:
    """Stop delivering to an endpoint; its pending deliveries are skipped."""
    _run(*_location(ctx), lambda o: o.disable_endpoint(endpoint_id, reason=reason))
    typer.echo(f"{endpoint_id} disabled")


@endpoints_app.command("enable")
def endpoints_enable(ctx: typer.Context, endpoint_id: str) -> None:
    """Deliver to an endpoint again (replay --status skipped resends what was skipped)."""
    _run(*_location(ctx), lambda o: o.enable_endpoint(endpoint_id))
    typer.echo(f"{endpoint_id} enabled")


@endpoints_app.command("remove")
def endpoints_remove(ctx: typer.Context, endpoint_id: str) -> None:
    """Delete an endpoint with its deliveries and attempt log."""
    _run(*_location(ctx), lambda o: o.delete_endpoint(endpoint_id))
    typer.echo(f"{endpoint_id} removed")


# -- messages and deliveries ---------------------------------------------------------------


@app.command()
def send(
    event_type: Annotated[str, typer.Argument(help="The event type, e.g. invoice.paid.")],
    *,
    data: Annotated[str, typer.Option(help="The JSON payload.")] = "{}",
    idempotency_key: Annotated[str | None, typer.Option(help="Enqueue at most once.")] = None,
    ordering_key: Annotated[str | None, typer.Option(help="Order within this key.")] = None,
    store: Store = "tether.db",
    schema: Schema = "public",
    prefix: Prefix = "tether_outbox",
) -> None:
    """Enqueue one message (durably); prints its webhook-id."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise _fail(f"--data is not JSON: {exc}") from None
    msg_id = _run(
        store,
        schema,
        prefix,
        lambda o: o.enqueue(
            event_type, payload, idempotency_key=idempotency_key, ordering_key=ordering_key
        ),
    )
    typer.echo(msg_id)


@app.command()
def attempts(
    *,
    delivery: Annotated[int | None, typer.Option(help="One delivery's attempts.")] = None,
    msg: Annotated[str | None, typer.Option(help="One message's attempts (webhook-id).")] = None,
    endpoint: Annotated[str | None, typer.Option(help="One endpoint's attempts.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    store: Store = "tether.db",
    schema: Schema = "public",
    prefix: Prefix = "tether_outbox",
) -> None:
    """Show the attempt log: status, latency, error and the response excerpt."""
    found = _run(
        store,
        schema,
        prefix,
        lambda o: o.attempts(delivery_id=delivery, msg_id=msg, endpoint_id=endpoint, limit=limit),
    )
    if not found:
        typer.echo("no attempts")
    for a in found:
        code = a.status_code if a.status_code is not None else "-"
        excerpt = (a.response or "").replace("\n", " ")[:120]
        detail = " | ".join(part for part in (a.error, excerpt) if part)
        typer.echo(
            f"{_iso(a.started_at)}  delivery={a.delivery_id} #{a.attempt}  {a.outcome:9} "
            f"{code}  {a.latency * 1000:.0f}ms  {a.endpoint_id}  {a.msg_id}  {detail}"
        )


@app.command()
def replay(
    *,
    status: Annotated[str, typer.Option(help="dead, delivered or skipped.")] = "dead",
    since: Annotated[str | None, typer.Option(help="ISO time, epoch or age (2h).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time, epoch or age (30m).")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint.")] = None,
    event_type: Annotated[str | None, typer.Option(help="Only this event type.")] = None,
    delivery: Annotated[int | None, typer.Option(help="Retry just this delivery.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Count, change nothing.")] = False,
    store: Store = "tether.db",
    schema: Schema = "public",
    prefix: Prefix = "tether_outbox",
) -> None:
    """Send finished deliveries again (same webhook-id, fresh signature and schedule)."""
    if delivery is not None:
        moved = _run(store, schema, prefix, lambda o: o.retry(delivery))
        typer.echo(f"delivery {delivery} {'queued again' if moved else 'not retried (pending?)'}")
        return
    try:
        chosen = DeliveryStatus(status)
    except ValueError:
        raise _fail("--status must be dead, delivered or skipped") from None
    count = _run(
        store,
        schema,
        prefix,
        lambda o: o.replay(
            status=chosen,
            since=_when(since),
            until=_when(until),
            endpoint_id=endpoint,
            event_type=event_type,
            dry_run=dry_run,
        ),
    )
    typer.echo(f"{count} deliveries {'would be' if dry_run else ''} replayed".replace("  ", " "))


@app.command()
def dead(
    *,
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    store: Store = "tether.db",
    schema: Schema = "public",
    prefix: Prefix = "tether_outbox",
) -> None:
    """List the dead letters: deliveries whose every scheduled attempt failed."""
    found = _run(store, schema, prefix, lambda o: o.dead(endpoint_id=endpoint, limit=limit))
    if not found:
        typer.echo("no dead deliveries")
    for d in found:
        typer.echo(_delivery_line(d))


@app.command()
def work(
    *,
    concurrency: Annotated[int, typer.Option(help="Deliveries at once.")] = 64,
    allow: Annotated[
        list[str] | None, typer.Option(help="A private network to allow; repeat.")
    ] = None,
    store: Store = "tether.db",
    schema: Schema = "public",
    prefix: Prefix = "tether_outbox",
) -> None:
    """Run a delivery worker until interrupted (SIGINT or SIGTERM)."""
    from tether.webhooks._outbox_policy import OutboxPolicy  # noqa: PLC0415 - only here

    try:
        policy = OutboxPolicy(concurrency=concurrency)
        egress = EgressPolicy(allow=tuple(allow or ()))
    except ConfigError as exc:
        raise _fail(str(exc)) from None

    async def serve(outbox: Outbox) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        async with outbox.worker():
            typer.echo(f"tether outbox: delivering from {outbox.store!r}")
            await stop.wait()
            typer.echo("tether outbox: stopping")

    _run(store, schema, prefix, serve, policy=policy, egress=egress)


if __name__ == "__main__":
    app()
