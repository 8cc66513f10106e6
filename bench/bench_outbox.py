"""Webhook outbox delivery throughput against a Celery task, in one run, ratios printed.

    python bench/bench_outbox.py             # 4000 backlog + 600 paced messages per system
    python bench/bench_outbox.py --quick     # a smoke run

Systems, each delivering signed JSON webhooks to the same loopback receiver:

* tether on SQLite, one process: the application enqueues (durable, group commit) and an
  in-process worker delivers, the embedded default;
* tether on PostgreSQL with 1 and with 4 worker processes (`FOR UPDATE SKIP LOCKED`), the
  enqueuer in another process, woken by LISTEN/NOTIFY;
* the design in common use today: a Celery task (Redis broker, prefork pool, 4 processes) that
  signs and posts with `requests` (one Session per process) and retries with countdowns.

Two phases per system. Throughput: a backlog of N messages is enqueued first, then the
workers start; deliveries per second are measured at the receiver between the first and the
last first-attempt, so worker start-up does not count. Latency: the workers run and messages
are enqueued at a steady rate; time-to-first-attempt is from just before `enqueue()` (or
`.delay()`) to the receiver reading the request, p50 and p99.

The receiver is aiohttp in its own process and answers 200 at once. Everything runs on this
machine, so the numbers include the CPU the receiver and the brokers take.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
SECRET = "whsec_" + base64.b64encode(b"bench-outbox-standard-webhooks-key").decode()
DATA = {
    "id": "in_1PqRsTuVwXyZ",
    "customer": "cus_9s6XKzkNRiz8i3",
    "amount_due": 4200,
    "currency": "eur",
    "lines": [{"id": f"il_{n}", "amount": 1050, "description": "Seat"} for n in range(4)],
}


def payload(phase: str, n: int) -> dict[str, Any]:
    return {"type": "invoice.paid", "phase": phase, "n": n, "t": time.time(), "data": DATA}


# -- the receiver process -------------------------------------------------------------------


def run_receiver(port_file: str) -> None:
    from aiohttp import web

    first: dict[str, tuple[float, float, str]] = {}  # msg id -> (received, enqueued, phase)
    attempts = {"n": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        attempts["n"] += 1
        msg_id = request.headers.get("webhook-id", "")
        if msg_id not in first:
            data = json.loads(body)
            first[msg_id] = (now, float(data["t"]), str(data["phase"]))
        return web.Response(status=200)

    async def stats(request: web.Request) -> web.Response:
        phase = request.query.get("phase", "")
        rows = [(r, e) for r, e, p in first.values() if p == phase]
        received = sorted(r for r, _ in rows)
        latencies = sorted(r - e for r, e in rows) if request.query.get("full") else []
        return web.json_response(
            {
                "unique": len(rows),
                "attempts": attempts["n"],
                "first": received[0] if received else None,
                "last": received[-1] if received else None,
                "latencies": latencies,
            }
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        app.router.add_get("/stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        Path(port_file).write_text(str(runner.addresses[0][1]))
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen([sys.executable, __file__, "receiver", str(port_file)])
        try:
            deadline = time.monotonic() + 20
            while not port_file.exists() or not port_file.read_text():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the receiver did not start")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port_file.read_text()}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def receiver_stats(url: str, phase: str, *, full: bool = False) -> dict[str, Any]:
    import aiohttp

    params = {"phase": phase, **({"full": "1"} if full else {})}
    async with aiohttp.ClientSession() as session, session.get(f"{url}/stats", params=params) as r:
        return dict(await r.json())


async def wait_for(url: str, phase: str, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = await receiver_stats(url, phase)
        if stats["unique"] >= count:
            return await receiver_stats(url, phase, full=True)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{phase}: only {stats['unique']} of {count} delivered in time")
        await asyncio.sleep(0.05)


@dataclass
class Result:
    name: str
    per_second: float
    p50: float
    p99: float


def summarise(name: str, backlog: dict[str, Any], paced: dict[str, Any], n: int) -> Result:
    span = backlog["last"] - backlog["first"]
    latencies = paced["latencies"]
    return Result(
        name=name,
        per_second=(n - 1) / span if span > 0 else float("inf"),
        p50=statistics.median(latencies),
        p99=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


async def paced(enqueue: Any, phase: str, count: int, rate: float) -> None:
    """Call `enqueue(phase, n)` `count` times at `rate` per second, each on its own task."""
    start = time.monotonic()
    tasks = []
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(enqueue(phase, n)))
    await asyncio.gather(*tasks)


# -- tether -----------------------------------------------------------------------------------


def outbox_for(location: str, schema: str) -> Any:
    from tether import webhooks

    policy = webhooks.OutboxPolicy(concurrency=128, poll_interval=1.0, breaker=None)
    store = webhooks.open_outbox_store(location, schema=schema)
    return webhooks.Outbox(
        store, policy=policy, egress=webhooks.EgressPolicy(allow=("127.0.0.1/32",))
    )


async def add_endpoint(location: str, schema: str, url: str) -> None:
    box = outbox_for(location, schema)
    async with box:
        await box.add_endpoint(f"{url}/hook", secret=SECRET)


async def enqueue_backlog(box: Any, phase: str, count: int) -> None:
    for start in range(0, count, 256):
        await asyncio.gather(
            *(box.enqueue("invoice.paid", payload(phase, n)) for n in range(start, start + 256))
        )


def run_worker(location: str, schema: str) -> None:
    async def main() -> None:
        box = outbox_for(location, schema)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with box:
            # Ready, then wait for the go: every worker starts delivering at the same moment,
            # so the throughput span does not include interpreter start-up.
            print("ready", flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)
            async with box.worker():
                await stop.wait()

    asyncio.run(main())


async def bench_sqlite(url: str, args: argparse.Namespace, tmp: str) -> Result:
    location = str(Path(tmp) / "outbox.db")
    await add_endpoint(location, "public", url)
    box = outbox_for(location, "public")
    async with box:
        await enqueue_backlog(box, "sqlite-backlog", args.messages)
        async with box.worker():
            backlog = await wait_for(url, "sqlite-backlog", args.messages, args.timeout)
            await paced(
                lambda phase, n: box.enqueue("invoice.paid", payload(phase, n)),
                "sqlite-paced",
                args.paced,
                args.rate,
            )
            latency = await wait_for(url, "sqlite-paced", args.paced, args.timeout)
    return summarise("tether SQLite, 1 process", backlog, latency, args.messages)


async def bench_postgres(url: str, args: argparse.Namespace, workers: int) -> Result:
    import asyncpg

    schema = f"bench_outbox_{uuid.uuid4().hex[:8]}"
    await add_endpoint(args.pg, schema, url)
    name = f"pg{workers}"
    box = outbox_for(args.pg, schema)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        async with box:
            await enqueue_backlog(box, f"{name}-backlog", args.messages)
            procs = [
                subprocess.Popen(
                    [sys.executable, __file__, "worker", args.pg, schema],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                for _ in range(workers)
            ]
            for proc in procs:
                assert proc.stdout is not None
                ready = await asyncio.to_thread(proc.stdout.readline)
                assert ready.strip() == b"ready", ready
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            backlog = await wait_for(url, f"{name}-backlog", args.messages, args.timeout)
            await paced(
                lambda phase, n: box.enqueue("invoice.paid", payload(phase, n)),
                f"{name}-paced",
                args.paced,
                args.rate,
            )
            latency = await wait_for(url, f"{name}-paced", args.paced, args.timeout)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        conn = await asyncpg.connect(args.pg)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    label = f"tether PostgreSQL, {workers} worker{'s' if workers > 1 else ''}"
    return summarise(label, backlog, latency, args.messages)


# -- Celery -----------------------------------------------------------------------------------

CELERY_APP = """
import base64, hashlib, hmac, json, os, time
import requests
from celery import Celery

app = Celery("bench_outbox", broker=os.environ["BENCH_BROKER"])
app.conf.task_default_queue = os.environ["BENCH_QUEUE"]
app.conf.broker_connection_retry_on_startup = True
KEY = base64.b64decode(os.environ["BENCH_SECRET"].removeprefix("whsec_"))
SCHEDULE = [60, 300, 1500, 7200, 36000]
session = requests.Session()


@app.task(bind=True, max_retries=len(SCHEDULE))
def deliver(self, url, body, msg_id):
    timestamp = str(int(time.time()))
    signed = f"{msg_id}.{timestamp}.".encode() + body.encode()
    signature = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + signature,
    }
    try:
        response = session.post(url, data=body, headers=headers, timeout=15)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise self.retry(exc=exc, countdown=SCHEDULE[self.request.retries])
"""


async def bench_celery(url: str, args: argparse.Namespace, tmp: str) -> Result:
    import redis

    queue = f"bench_outbox_{uuid.uuid4().hex[:8]}"
    module = Path(tmp) / "bench_celery_app.py"
    module.write_text(CELERY_APP)
    env = {
        **os.environ,
        "BENCH_BROKER": args.redis,
        "BENCH_QUEUE": queue,
        "BENCH_SECRET": SECRET,
        "PYTHONPATH": tmp,
    }
    os.environ.update({k: env[k] for k in ("BENCH_BROKER", "BENCH_QUEUE", "BENCH_SECRET")})
    sys.path.insert(0, tmp)
    import bench_celery_app  # type: ignore[import-not-found]

    deliver = bench_celery_app.deliver
    target = f"{url}/hook"

    def send(phase: str, n: int) -> None:
        body = json.dumps(payload(phase, n), separators=(",", ":"))
        deliver.delay(target, body, f"msg_{uuid.uuid4().hex}")

    worker: subprocess.Popen[bytes] | None = None
    try:
        for n in range(args.messages):
            send("celery-backlog", n)
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "bench_celery_app", "worker",
                "--pool=prefork", f"--concurrency={args.celery_concurrency}", "-Q", queue,
                "--without-heartbeat", "--without-mingle", "--without-gossip",
                "--loglevel=WARNING",
            ],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,  # its start-up banner
        )  # fmt: skip
        backlog = await wait_for(url, "celery-backlog", args.messages, args.timeout)

        async def enqueue(phase: str, n: int) -> None:
            send(phase, n)

        await paced(enqueue, "celery-paced", args.paced, args.rate)
        latency = await wait_for(url, "celery-paced", args.paced, args.timeout)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        client = redis.Redis.from_url(args.redis)
        client.delete(queue, f"{queue}\x06\x169", f"_kombu.binding.{queue}")
        for key in client.scan_iter(f"*{queue}*"):
            client.delete(key)
        client.close()
    label = f"Celery + Redis + requests, prefork x{args.celery_concurrency}"
    return summarise(label, backlog, latency, args.messages)


# -- the ceiling ------------------------------------------------------------------------------


async def bench_bare(url: str, count: int) -> float:
    """Requests per second of a bare aiohttp client, no store, no signing: the machine's limit
    for this exchange, with the receiver sharing its cores."""
    import aiohttp

    body = json.dumps(payload("bare", 0)).encode()
    sem = asyncio.Semaphore(128)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as session:

        async def one() -> None:
            async with (
                sem,
                session.post(
                    f"{url}/hook", data=body, headers={"webhook-id": uuid.uuid4().hex}
                ) as response,
            ):
                await response.read()

        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        return count / (time.monotonic() - start)


# -- main -------------------------------------------------------------------------------------


async def pg_reachable(dsn: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except Exception:
        return False
    await conn.close()
    return True


def redis_reachable(url: str) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        client.ping()
        client.close()
    except Exception:
        return False
    return True


async def main(args: argparse.Namespace) -> None:
    results: list[Result] = []
    with receiver() as url, tempfile.TemporaryDirectory() as tmp:
        print(f"receiver on {url}; {args.messages} backlog + {args.paced} paced at {args.rate}/s")
        ceiling = await bench_bare(url, args.messages)
        if "sqlite" in args.only:
            results.append(await bench_sqlite(url, args, tmp))
            print(f"  done: {results[-1]}", flush=True)
        wanted = [n for n, key in ((1, "pg1"), (4, "pg4")) if key in args.only]
        if not wanted:
            pass
        elif await pg_reachable(args.pg):
            for workers in wanted:
                results.append(await bench_postgres(url, args, workers))
                print(f"  done: {results[-1]}", flush=True)
        else:
            print("PostgreSQL unreachable: its rows are skipped")
        celery: Result | None = None
        if "celery" not in args.only:
            pass
        elif redis_reachable(args.redis):
            celery = await bench_celery(url, args, tmp)
            results.append(celery)
            print(f"  done: {celery}", flush=True)
        else:
            print("Redis unreachable: the Celery row is skipped")
    print()
    print(f"ceiling: a bare aiohttp client, no store, no signing: {ceiling:.0f} requests/s")
    print(f"{'system':44} {'deliveries/s':>12} {'x Celery':>9} {'p50 ttfa':>10} {'p99 ttfa':>10}")
    for r in results:
        ratio = f"{r.per_second / celery.per_second:.2f}" if celery else "-"
        print(
            f"{r.name:44} {r.per_second:12.0f} {ratio:>9} "
            f"{r.p50 * 1000:8.1f}ms {r.p99 * 1000:8.1f}ms"
        )


def cli() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "receiver":
        run_receiver(sys.argv[2])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        run_worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4000, help="backlog per system")
    parser.add_argument("--paced", type=int, default=600, help="paced messages per system")
    parser.add_argument("--rate", type=float, default=200.0, help="paced enqueues per second")
    parser.add_argument("--celery-concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0, help="per phase, seconds")
    parser.add_argument("--pg", default=DEFAULT_PG)
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    parser.add_argument(
        "--only",
        default="sqlite,pg1,pg4,celery",
        help="comma-separated systems to run: sqlite, pg1, pg4, celery",
    )
    parser.add_argument("--quick", action="store_true", help="500 backlog, 100 paced")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.paced = 500, 100
    args.only = set(args.only.split(","))
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
