"""Enqueues messages until killed, printing each id once enqueue() returned (crash test).

python -m tests.outbox._crash_enqueuer; configured like _crash_worker (OUTBOX_STORE,
OUTBOX_SCHEMA). Each printed line is a promise: that message is on disk.
"""

from __future__ import annotations

import asyncio
import os
import sys

from tether import webhooks


async def main() -> None:
    store = webhooks.open_outbox_store(
        os.environ["OUTBOX_STORE"], schema=os.environ.get("OUTBOX_SCHEMA", "public")
    )
    async with webhooks.Outbox(store) as outbox:

        async def producer(lane: int) -> None:
            for n in range(100_000):
                msg_id = await outbox.enqueue("order.created", {"lane": lane, "n": n})
                # One write() per line: a SIGKILL cannot tear a line that was written.
                os.write(sys.stdout.fileno(), msg_id.encode() + b"\n")

        await asyncio.gather(*(producer(lane) for lane in range(16)))


if __name__ == "__main__":
    asyncio.run(main())
