"""An outbox worker process for the crash test (python -m tests.outbox._crash_worker).

Configured by environment: OUTBOX_STORE (a path or postgresql:// URL) and OUTBOX_SCHEMA. Short
leases, so deliveries a killed worker held come back within the test.
"""

from __future__ import annotations

import asyncio
import os
import signal

from tether import webhooks


async def main() -> None:
    store = webhooks.open_outbox_store(
        os.environ["OUTBOX_STORE"], schema=os.environ.get("OUTBOX_SCHEMA", "public")
    )
    policy = webhooks.OutboxPolicy(
        timeout=2.0, max_timeout=2.0, lease_grace=1.0, poll_interval=0.2, concurrency=32
    )
    outbox = webhooks.Outbox(
        store, policy=policy, egress=webhooks.EgressPolicy(allow=("127.0.0.1/32",))
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with outbox, outbox.worker():
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
