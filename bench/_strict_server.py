"""A loopback API that enforces N requests per second strictly, run in its own process.

Two endpoints, both counting in fixed one-second windows on the server's clock (the commonest
real-world scheme):

- `/strict`   answers 429 past N in the current window and says nothing else;
- `/adaptive` does the same and advertises its quota with the IETF fields
  (`RateLimit-Policy: "default";q=N;w=1` and `RateLimit: "default";r=<left>;t=<reset>`).

`GET /stats` returns the counts; `POST /reset` clears them.
"""

from __future__ import annotations

import math
import socket
import sys
import time

from aiohttp import web


def build(limit: int) -> web.Application:
    state = {"window": 0, "count": 0, "ok": 0, "limited": 0}

    def admit() -> tuple[bool, int, float]:
        now = time.monotonic()
        window = math.floor(now)
        if window != state["window"]:
            state["window"], state["count"] = window, 0
        reset = window + 1 - now
        if state["count"] >= limit:
            state["limited"] += 1
            return False, 0, reset
        state["count"] += 1
        state["ok"] += 1
        return True, limit - state["count"], reset

    async def strict(_: web.Request) -> web.Response:
        ok, _, _ = admit()
        return web.json_response({"ok": ok}, status=200 if ok else 429)

    async def adaptive(_: web.Request) -> web.Response:
        ok, left, reset = admit()
        headers = {
            "RateLimit-Policy": f'"default";q={limit};w=1',
            "RateLimit": f'"default";r={left};t={max(1, math.ceil(reset))}',
        }
        return web.json_response({"ok": ok}, status=200 if ok else 429, headers=headers)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"ok": state["ok"], "limited": state["limited"]})

    async def reset(_: web.Request) -> web.Response:
        state.update(ok=0, limited=0)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/strict", strict)
    app.router.add_get("/adaptive", adaptive)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


if __name__ == "__main__":
    listener = socket.socket(fileno=int(sys.argv[1]))
    web.run_app(build(int(sys.argv[2])), sock=listener, print=None, access_log=None)
