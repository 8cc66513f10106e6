"""`tether webhooks ...`: inbox inspection and repair, and signatures by hand."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether import stores, webhooks
from tether.cli._webhooks import app
from tether.stores import EventStatus, NewEvent

T0 = 1_767_225_600.0
SECRET = "CANARY-cli-secret-never-print-me"
BODY = b'{"type":"invoice.paid","id":"evt_1"}'

# Wide enough that tables do not wrap the values the tests look for.
runner = CliRunner(env={"COLUMNS": "200"})


def seed(db: Path) -> dict[str, int]:
    """A database with one pending, one delivered and one dead event; their row ids."""

    async def fill() -> dict[str, int]:
        async with stores.SQLiteInboxStore(db) as store:
            ids = {}
            for name, source in (("pending", "stripe"), ("delivered", "stripe"), ("dead", "gh")):
                ids[name] = (
                    await store.add(
                        NewEvent(
                            source=source,
                            event_id=f"evt_{name}",
                            event_type="invoice.paid",
                            received_at=T0,
                            headers=(("Stripe-Signature", "t=1,v1=abc"),),
                            body=BODY,
                            scheme="stripe",
                            secret_index=0,
                            signed_at=int(T0),
                        )
                    )
                    or -1
                )
            leases = {
                lease.event.event_id: lease
                for lease in await store.claim(now=T0, limit=10, lease=30)
            }
            await store.complete(
                leases["evt_delivered"], status=EventStatus.DELIVERED, handled=["h"], now=T0
            )
            await store.fail(
                leases["evt_dead"], error="h: ValueError: nope", handled=[], retry_at=None, now=T0
            )
            await store.fail(leases["evt_pending"], error="h: x", handled=[], retry_at=T0, now=T0)
            return ids

    return asyncio.run(fill())


def status_of(db: Path, row_id: int) -> EventStatus:
    async def read() -> EventStatus:
        async with stores.SQLiteInboxStore(db) as store:
            event = await store.get(row_id)
            assert event is not None
            return event.status

    return asyncio.run(read())


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "inbox.db"


def test_help_lists_every_command() -> None:
    """`--help` names each subcommand with a description."""
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("list", "show", "replay", "dead", "purge", "verify", "sign"):
        assert command in result.output


def test_list_filters_and_prints_json(db: Path) -> None:
    """`list` shows events newest first, filtered, as a table or JSON lines."""
    seed(db)
    table = runner.invoke(app, ["list", "--db", str(db)])
    assert table.exit_code == 0, table.output
    assert "evt_pending" in table.output
    assert "evt_dead" in table.output
    lines = runner.invoke(app, ["list", "--db", str(db), "--source", "stripe", "--json"])
    rows = [json.loads(line) for line in lines.output.splitlines()]
    assert [row["event_id"] for row in rows] == ["evt_delivered", "evt_pending"]
    assert rows[0]["status"] == "delivered"
    dead = runner.invoke(app, ["dead", "--db", str(db)])
    assert "ValueError: nope" in dead.output
    assert "evt_pending" not in dead.output


def test_show_prints_headers_verification_and_body(db: Path) -> None:
    """`show` finds an event by row id or by source and event id."""
    ids = seed(db)
    result = runner.invoke(app, ["show", str(ids["dead"]), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "Stripe-Signature: t=1,v1=abc" in result.output
    assert BODY.decode() in result.output
    assert "scheme=stripe" in result.output
    by_key = runner.invoke(
        app, ["show", "evt_dead", "--source", "gh", "--db", str(db), "--json", "--no-body"]
    )
    details = json.loads(by_key.output)
    assert details["status"] == "dead"
    assert "body" not in details


def test_replay_moves_dead_events_back_to_pending(db: Path) -> None:
    """`replay --dead` and `replay ID` make finished events pending again."""
    ids = seed(db)
    result = runner.invoke(app, ["replay", "--dead", "--db", str(db)])
    assert (result.exit_code, result.output.strip()) == (0, "1 event(s) pending again")
    assert status_of(db, ids["dead"]) is EventStatus.PENDING
    again = runner.invoke(app, ["replay", str(ids["delivered"]), "--db", str(db)])
    assert again.output.strip() == "1 event(s) pending again"
    assert status_of(db, ids["delivered"]) is EventStatus.PENDING


def test_purge_deletes_old_finished_events_after_confirmation(db: Path) -> None:
    """`purge` asks first, deletes only finished events past the age, never pending ones."""
    ids = seed(db)
    declined = runner.invoke(app, ["purge", "--older-than", "1d", "--db", str(db)], input="n\n")
    assert declined.exit_code == 1
    assert status_of(db, ids["delivered"]) is EventStatus.DELIVERED
    statuses = ["--status", "delivered", "--status", "dead"]
    result = runner.invoke(app, ["purge", "--older-than", "1d", "-y", *statuses, "--db", str(db)])
    assert (result.exit_code, result.output.strip()) == (0, "2 event(s) deleted")
    assert status_of(db, ids["pending"]) is EventStatus.PENDING


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--db", "missing.db"], "no inbox database at missing.db"),
        (["list", "--status", "lost"], "unknown status 'lost'"),
        (["show", "abc"], "give the numeric id"),
        (["replay"], "say what to replay"),
        (["purge", "--older-than", "soon", "-y"], "not a duration"),
        (["verify", "svix", "--body", "x"], "unknown scheme 'svix'"),
        (["list", "--db", "mysql://u:hunter2@h/db"], "unknown inbox store URL scheme"),
    ],
)
def test_mistakes_are_one_readable_line(db: Path, args: list[str], message: str) -> None:
    """A bad call exits 2 with one line on stderr, no traceback and no password."""
    seed(db)
    full = args if "--db" in args else [*args, "--db", str(db)]
    if args[0] == "verify":
        full = args
    result = runner.invoke(app, full)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert "hunter2" not in result.output


def test_sign_then_verify_round_trips_without_printing_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers from `sign` pass `verify`; a changed body fails with its reason and exit 1."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    body_file = tmp_path / "body.json"
    body_file.write_bytes(BODY)
    secret = ["--secret-env", "HOOK_SECRET"]
    signed = runner.invoke(
        app, ["sign", "github", *secret, "--body-file", str(body_file), "--msg-id", "d-1"]
    )
    assert signed.exit_code == 0, signed.output
    headers = [line for line in signed.output.splitlines() if line]
    assert any(line.startswith("X-Hub-Signature-256: sha256=") for line in headers)
    flags = [part for line in headers for part in ("-H", line)]
    ok = runner.invoke(
        app,
        ["verify", "github", *flags, "--body-file", str(body_file), "--secret-env", "HOOK_SECRET"],
    )
    assert (ok.exit_code, ok.output.strip()) == (
        0,
        "verified: scheme=github secret=0 timestamp=- msg_id=d-1",
    )
    bad = runner.invoke(
        app, ["verify", "github", *flags, "--body", "tampered", "--secret-env", "HOOK_SECRET"]
    )
    assert bad.exit_code == 1
    assert bad.output.startswith("not verified: no_matching_signature")
    for result in (signed, ok, bad):
        assert SECRET not in result.output


def test_verify_a_stored_event_and_sign_with_options(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`verify --event` checks a stored delivery; scheme options pass through -o."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    headers = webhooks.sign("stripe", secret=SECRET, body=BODY, timestamp=int(T0))

    async def store_it() -> int:
        async with stores.SQLiteInboxStore(db) as store:
            row = await store.add(
                NewEvent(
                    source="stripe",
                    event_id="evt_1",
                    event_type=None,
                    received_at=T0,
                    headers=tuple(headers.items()),
                    body=BODY,
                    scheme="stripe",
                )
            )
            return row or -1

    row_id = asyncio.run(store_it())
    base = ["verify", "stripe", "--event", str(row_id), "--db", str(db)]
    stale = runner.invoke(app, [*base, "--secret-env", "HOOK_SECRET"])
    assert stale.exit_code == 1
    assert "timestamp_too_old" in stale.output
    fine = runner.invoke(app, [*base, "--secret-env", "HOOK_SECRET", "--no-tolerance"])
    assert fine.exit_code == 0, fine.output
    options = ["-o", "header=X-Sig", "-o", "prefix=v1=", "--json"]
    signed = runner.invoke(
        app, ["sign", "hmac", "--body", "x", "--secret-env", "HOOK_SECRET", *options]
    )
    assert json.loads(signed.output)["X-Sig"].startswith("v1=")


def test_verify_without_a_secret_source_fails_when_not_interactive() -> None:
    """With no --secret-env/--secret-file and no terminal, verify says how to give one."""
    result = runner.invoke(app, ["verify", "github", "--body", "x", "-H", "A: b"])
    assert result.exit_code == 2
    assert "--secret-env" in result.output
