"""`tether outbox ...`: endpoints, send, attempts, replay, dead and work, and the secret canary:
no signing secret ever reaches the terminal, a log record, a repr or an error message."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from typer.testing import CliRunner

from tether import webhooks
from tether.cli._outbox import app
from tether.webhooks import DeliveryStatus

from ..conftest import LoopbackServer

CANARY = "whsec_Q0FOQVJZLW91dGJveC1zZWNyZXQtbmV2ZXItcHJpbnQtbWU="
ROOT = Path(__file__).resolve().parents[2]


def run(store: Path, *args: str) -> str:
    env = {"TETHER_OUTBOX_STORE": str(store)}
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_the_commands_manage_endpoints_and_messages_without_showing_secrets(
    tmp_path: Path, server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Add, list, send, deliver, inspect, replay and rotate; the secret shows up nowhere."""
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "cli.db"
    secret_file = tmp_path / "secret.txt"
    shared_file = tmp_path / "shared.txt"
    shared_file.write_text("")
    shared_file.chmod(0o644)
    # The receiver echoes the signature header and the canary back, as a careless one might.
    server.script("POST", "/hook", lambda: web.Response(status=500, text=f"bad {CANARY}"))
    outputs = [
        await asyncio.to_thread(
            run,
            store,
            "endpoints",
            "--allow",
            "127.0.0.1/32",
            "add",
            f"{server.url}/hook",
            "--id",
            "billing",
            "--type",
            "invoice.*",
            "--header",
            "X-Tenant: t1",
            "--secret-file",
            str(secret_file),
        )
    ]
    written = secret_file.read_text().strip()
    assert written.startswith("whsec_")
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"

    def outbox() -> webhooks.Outbox:
        return webhooks.Outbox(
            webhooks.open_outbox_store(store),
            egress=webhooks.EgressPolicy(allow=("127.0.0.1/32",)),
            policy=webhooks.OutboxPolicy(schedule=()),
        )

    async with outbox() as box:
        await box.rotate_secret("billing", secret=CANARY)
    outputs.append(await asyncio.to_thread(run, store, "endpoints"))
    assert "billing" in outputs[-1]
    assert "X-Tenant" not in outputs[-1]
    msg_id = (
        await asyncio.to_thread(run, store, "send", "invoice.paid", "--data", '{"id": 1}')
    ).strip()
    assert msg_id.startswith("msg_")
    async with outbox() as box:
        w = box.worker()
        assert await w.run_once() == 1
        await w.aclose()
        (dead,) = await box.dead()
    commands = (
        ("attempts", "--msg", msg_id),
        ("dead",),
        ("replay", "--dry-run"),
        ("replay", "--since", "1h", "--endpoint", "billing"),
        ("endpoints", "rotate", "billing", "--overlap", "60"),
        ("endpoints", "disable", "billing", "--reason", "maintenance"),
        ("endpoints", "list"),
        ("endpoints", "enable", "billing"),
        ("endpoints", "update", "billing", "--rate-limit", "5/s", "--type", "order.*"),
        ("endpoints", "secret", "billing", "--secret-file", str(shared_file)),
    )
    outputs.extend([await asyncio.to_thread(run, store, *args) for args in commands])
    text = "\n".join(outputs)
    assert "types=order.*  [rate 5/s]" in text
    # An existing, world-readable file is narrowed to 0600 when the secret goes in.
    assert oct(shared_file.stat().st_mode & 0o777) == "0o600"
    rotated = shared_file.read_text().strip()
    assert rotated.startswith("whsec_")
    assert rotated not in (CANARY, written)
    assert f"{dead.id}  dead" in text
    assert "1 deliveries would be replayed" in text
    assert "1 deliveries replayed" in text
    assert "disabled (maintenance)" in text
    assert "[REDACTED]" in text
    for secret in (CANARY, written, rotated):
        assert secret not in text
        assert secret not in caplog.text
    async with outbox() as box:
        # Replayed, then skipped when the endpoint was disabled.
        (delivery,) = await box.deliveries()
        assert delivery.status is DeliveryStatus.SKIPPED
        assert CANARY not in repr(await box.endpoint("billing"))
        assert CANARY not in repr(box)


def test_an_ed25519_endpoint_hands_out_only_its_public_key(tmp_path: Path) -> None:
    """`endpoints add --ed25519` writes the whpk_ key for the receiver; the whsk_ stays in."""
    store = tmp_path / "ed.db"
    key_file = tmp_path / "receiver.key"
    output = run(
        store,
        "endpoints",
        "add",
        "https://example.com/hooks",
        "--id",
        "ed",
        "--ed25519",
        "--secret-file",
        str(key_file),
    )
    public = key_file.read_text().strip()
    assert public.startswith("whpk_")

    async def stored_secret() -> str:
        async with webhooks.Outbox(webhooks.open_outbox_store(store)) as box:
            return await box.secret("ed")

    secret = asyncio.run(stored_secret())
    assert secret.startswith("whsk_")
    assert secret not in output


def test_bad_input_is_a_one_line_error_not_a_traceback(tmp_path: Path) -> None:
    """Unknown endpoints, bad JSON and bad times exit 2 with a reason."""
    env = {"TETHER_OUTBOX_STORE": str(tmp_path / "cli.db")}
    runner = CliRunner()
    for args in (
        ["send", "a", "--data", "{nope"],
        ["endpoints", "disable", "nope"],
        ["replay", "--since", "yesterday-ish"],
        ["replay", "--status", "pending"],
        ["endpoints", "add", "http://169.254.169.254/latest/meta-data"],
    ):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output
        assert "Traceback" not in result.output


@pytest.mark.timeout(60)
async def test_work_delivers_until_sigterm(tmp_path: Path, server: LoopbackServer) -> None:
    """`tether outbox work` delivers what `send` enqueued and stops cleanly on SIGTERM."""
    store = tmp_path / "work.db"
    server.script("POST", "/hook", lambda: web.Response(status=204))
    await asyncio.to_thread(
        run, store, "endpoints", "--allow", "127.0.0.1/32", "add", f"{server.url}/hook"
    )
    for n in range(3):
        await asyncio.to_thread(run, store, "send", "a", "--data", f'{{"n": {n}}}')
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "outbox", "work", "--allow", "127.0.0.1/32"],
        cwd=ROOT,
        env={**os.environ, "TETHER_OUTBOX_STORE": str(store)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while server.count("/hook") < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # polling a condition with a deadline
        assert server.count("/hook") == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 0, output
    assert b"stopping" in output
