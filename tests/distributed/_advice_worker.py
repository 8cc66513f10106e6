"""Another process: calls a URL once with shared advice on and prints the status it got.

Arguments: the Redis URL, the key prefix, the URL to call.
"""

from __future__ import annotations

import asyncio
import sys

import tether
from tether.distributed import RedisAdviceStore


async def main(redis_url: str, prefix: str, url: str) -> None:
    store = RedisAdviceStore(redis=redis_url, prefix=prefix)
    async with tether.Client(shared_advice=store, retry=None) as client:
        try:
            response = await client.get(url)
        except tether.HTTPStatusError as error:
            print(error.status)
        else:
            print(response.status)
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
