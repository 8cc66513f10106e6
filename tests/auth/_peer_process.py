"""A second process for the shared-store tests: waits for "go", then calls the API 20 times.

Arguments: token URL, API URL, token store path, client id, client secret ("" for none).
"""

from __future__ import annotations

import asyncio
import json
import sys

import tether
from tether.auth import FileTokenStore, OAuth2


async def main(token_url: str, api_url: str, store_path: str, client_id: str, secret: str) -> None:
    auth = OAuth2.refresh_token(
        token_url,
        client_id,
        "seed-not-used-the-store-wins",
        secret or None,
        store=FileTokenStore(store_path),
        store_key="shared",
    )
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    async with tether.Client(auth=auth) as client:
        responses = await asyncio.gather(*(client.get(api_url) for _ in range(20)))
    print(json.dumps([r.status for r in responses]), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
