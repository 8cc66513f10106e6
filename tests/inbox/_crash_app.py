"""The receiver the crash test runs in a subprocess (uvicorn tests.inbox._crash_app:app).

Configured by environment: INBOX_STORE (a path or postgresql:// URL), INBOX_SCHEMA, and
INBOX_HANDLED_LOG, a file the handler appends each event id to, one line per success.
"""

from __future__ import annotations

import os

from tether import stores, webhooks

SECRET = "whsec_" + "Y3Jhc2gtdGVzdC1zdGFuZGFyZC13ZWJob29rcy1rZXk="

_store = stores.open_inbox_store(
    os.environ["INBOX_STORE"], schema=os.environ.get("INBOX_SCHEMA", "public")
)
inbox = webhooks.Inbox(
    [webhooks.Source("crash", "/hooks", "standard", SECRET)],
    store=_store,
    # A short lease, so the events the killed process had claimed come back within the test.
    policy=webhooks.DispatchPolicy(
        poll_interval=0.2, concurrency=16, backoff_base=0.1, handler_timeout=2, lease=4
    ),
)
_log = os.open(os.environ["INBOX_HANDLED_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


@inbox.handler("crash")
def record(event: webhooks.InboxEvent) -> None:
    # One write() per line with O_APPEND: lines never interleave, and a SIGKILL cannot lose a
    # write that returned (it is in the page cache; only a machine crash could).
    os.write(_log, event.event_id.encode() + b"\n")


app = inbox.app
