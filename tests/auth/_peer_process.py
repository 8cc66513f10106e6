"""A second process for the shared-store test: waits for "go", then calls the API 20 times."""

from __future__ import annotations

import asyncio
import json
import sys

import tether
from tether.auth import FileTokenStore, OAuth2


async def main(base_url: str, store_path: str, client_id: str, client_secret: str) -> None:
    auth = OAuth2.refresh_token(
        f"{base_url}/token",
        client_id,
        "seed-not-used-the-store-wins",
        client_secret,
        store=FileTokenStore(store_path),
        store_key="shared",
    )
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    async with tether.Client(base_url, auth=auth) as client:
        responses = await asyncio.gather(*(client.get("/api") for _ in range(20)))
    print(json.dumps([r.status for r in responses]), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
