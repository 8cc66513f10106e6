"""tether in one minute: a flaky weather API on loopback, and a client that copes.

Run it with `.venv/bin/python examples/quickstart.py` (after `scripts/bootstrap`). It starts
its own server on 127.0.0.1 (no internet needed) that
answers 503 and 429 with Retry-After, hangs, and echoes an API key back in an error body;
the client retries what is safe, obeys the server, keeps its deadline and never prints the key.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import pydantic
from aiohttp import web

import tether

API_KEY = "demo-key-1f2e3d4c"


class Forecast(pydantic.BaseModel):
    city: str
    temperature: float


def make_app() -> web.Application:
    calls: dict[str, int] = {}

    def count(name: str) -> int:
        calls[name] = calls.get(name, 0) + 1
        return calls[name]

    async def weather(request: web.Request) -> web.Response:
        if request.query.get("appid") != API_KEY:
            return web.json_response(
                {"error": f"invalid key {request.query.get('appid')}"}, status=401
            )
        if count("weather") == 1:
            return web.json_response(
                {"error": "warming up"}, status=503, headers={"Retry-After": "1"}
            )
        return web.json_response({"city": request.query["q"], "temperature": 21.5})

    async def alerts(_: web.Request) -> web.Response:
        if count("alerts") <= 2:
            return web.json_response(
                {"error": "slow down"}, status=429, headers={"retry-after-ms": "300"}
            )
        return web.json_response({"alerts": []})

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    async def report(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": f"key {request.query.get('appid')} is not allowed here"}, status=403
        )

    app = web.Application()
    app.router.add_get("/v1/weather", weather)
    app.router.add_get("/v1/alerts", alerts)
    app.router.add_get("/v1/slow", slow)
    app.router.add_get("/v1/report", report)
    return app


async def main() -> int:
    logging.basicConfig(level=logging.INFO, format="  log  %(message)s", stream=sys.stdout)
    runner = web.AppRunner(make_app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    print(f"demo API on {base}\n")
    failures = 0
    async with tether.Client(
        base,
        auth=tether.auth.ApiKey("appid", API_KEY, location="query"),
        timeout=tether.Timeout(total=3, attempt=1, connect=1),
        retry=tether.Retry(attempts=4),
    ) as client:
        print("1. a 503 with Retry-After: 1 is waited out, then the forecast is validated")
        forecast = await client.get_json("/weather", params={"q": "Oslo"}, model=Forecast)
        print(f"   -> {forecast!r}\n")

        print("2. two 429s with retry-after-ms: 300; the third attempt succeeds")
        response = await client.get("/alerts")
        took = f"{response.attempts} attempts, {response.elapsed:.2f} s"
        print(f"   -> {response.status} after {took}\n")

        print("3. an endpoint that hangs: each attempt is cut at 1 s, the call at 3 s")
        try:
            await client.get("/slow")
            failures += 1
        except tether.DeadlineExceeded as exc:
            print(f"   -> DeadlineExceeded: {exc}\n      cause: {exc.__cause__!r}\n")

        print("4. an error body that echoes the API key: the key never reaches the message")
        try:
            await client.get("/report")
            failures += 1
        except tether.PermissionDeniedError as exc:
            print(f"   -> {type(exc).__name__}: {exc}")
            if API_KEY in str(exc):
                failures += 1
    await runner.cleanup()
    print("\nall four behaved as described" if not failures else f"\n{failures} surprises")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
