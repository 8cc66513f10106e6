"""One process of the lease race: waits for "go" on stdin, then tries to take the lease.

Arguments: kind (sqlite, postgres, redis), target, namespace (schema or key prefix), name,
holder, and how many concurrent acquirers this process runs. Prints one line per acquirer:
the fence it was granted, or "-".
"""

from __future__ import annotations

import asyncio
import sys

from tether.stores import LeaseStore, PostgresLeaseStore, SQLiteLeaseStore


def make(kind: str, target: str, namespace: str) -> LeaseStore:
    if kind == "sqlite":
        return SQLiteLeaseStore(target)
    if kind == "postgres":
        return PostgresLeaseStore(target, schema=namespace)
    from tether.distributed import RedisLeaseStore

    return RedisLeaseStore(redis=target, prefix=namespace)


async def main(argv: list[str]) -> None:
    kind, target, namespace, name, holder, n = argv
    store = make(kind, target, namespace)
    await store.open()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    results = await asyncio.gather(
        *(store.acquire(name, f"{holder}-{i}", 30.0) for i in range(int(n)))
    )
    for lease in results:
        print(lease.fence if lease is not None else "-", flush=True)
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:7]))
