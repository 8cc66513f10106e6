"""The dispatcher on every store: at least once, retries with backoff, dead letter, replay."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tether import FakeClock, stores, webhooks
from tether._errors import ConfigError
from tether.stores import EventStatus, NewEvent

T0 = 1_767_225_600.0


def event(event_id: str = "evt_1", *, source: str = "stripe", event_type: str = "a") -> NewEvent:
    return NewEvent(
        source=source,
        event_id=event_id,
        event_type=event_type,
        received_at=T0,
        headers=(),
        body=b'{"n":1}',
        scheme="stripe",
    )


def make(
    store: stores.InboxStore, clock: FakeClock, **policy: float
) -> tuple[webhooks.Dispatcher, webhooks.Handlers]:
    handlers = webhooks.Handlers(["stripe", "github"])
    chosen = webhooks.DispatchPolicy(**policy)  # type: ignore[arg-type]
    # rand=1.0: each delay is its step's full ceiling, so the schedule is exact.
    return webhooks.Dispatcher(
        store, handlers, policy=chosen, clock=clock, rand=lambda: 1.0
    ), handlers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=T0)


async def test_async_and_sync_handlers_run_for_their_source_and_type(
    store: stores.InboxStore, clock: FakeClock
) -> None:
    """Matching handlers run in registration order; others do not; the event is delivered."""
    dispatcher, handlers = make(store, clock)
    calls: list[tuple[str, str]] = []
    thread_names: list[str] = []

    @handlers.on("stripe", "a")
    async def specific(e: webhooks.InboxEvent) -> None:
        calls.append(("specific", e.event_id))

    @handlers.on("stripe")
    def blocking(e: webhooks.InboxEvent) -> None:
        thread_names.append(threading.current_thread().name)
        calls.append(("blocking", e.event_id))

    @handlers.on("stripe", "b")
    async def other_type(e: webhooks.InboxEvent) -> None:
        calls.append(("other_type", e.event_id))

    @handlers.on("github")
    async def other_source(e: webhooks.InboxEvent) -> None:
        calls.append(("other_source", e.event_id))

    row_id = await store.add(event())
    assert await dispatcher.run_once() == 1
    assert calls == [("specific", "evt_1"), ("blocking", "evt_1")]
    assert thread_names != [threading.current_thread().name]
    stored = await store.get(row_id or -1)
    assert stored is not None
    assert stored.status is EventStatus.DELIVERED
    assert stored.handled == (
        f"{__name__}.{specific.__qualname__}",
        f"{__name__}.{blocking.__qualname__}",
    )
    assert await dispatcher.run_once() == 0


async def test_a_failure_is_retried_with_exponential_backoff_then_delivered(
    store: stores.InboxStore, clock: FakeClock
) -> None:
    """Failed attempts wait base, 2*base, ... before the next; success ends it."""
    dispatcher, handlers = make(store, clock, backoff_base=10, backoff_cap=25)
    outcomes = [RuntimeError("db down"), RuntimeError("still down"), RuntimeError("x"), None]

    @handlers.on("stripe")
    async def flaky(e: webhooks.InboxEvent) -> None:
        failure = outcomes.pop(0)
        if failure is not None:
            raise failure

    row_id = await store.add(event())
    due = []
    for _ in range(3):
        assert await dispatcher.run_once() == 1
        stored = await store.get(row_id or -1)
        assert stored is not None
        due.append(stored.next_attempt_at - clock.time())
        assert await dispatcher.run_once() == 0  # not before its time
        clock.advance(stored.next_attempt_at - clock.time())
    assert due == [10, 20, 25]
    assert await dispatcher.run_once() == 1
    stored = await store.get(row_id or -1)
    assert stored is not None
    assert (stored.status, stored.attempts) == (EventStatus.DELIVERED, 4)
    assert stored.last_error is not None
    assert "RuntimeError: x" in stored.last_error


def test_retry_delays_are_jittered_between_half_and_all_of_each_step() -> None:
    """The jitter keeps every delay within [step/2, step], the step doubling up to the cap."""
    policy = webhooks.DispatchPolicy(backoff_base=4, backoff_cap=20)
    assert [policy.retry_delay(n, 0.0) for n in (1, 2, 3, 4)] == [2, 4, 8, 10]
    assert [policy.retry_delay(n, 1.0) for n in (1, 2, 3, 4)] == [4, 8, 16, 20]


async def test_an_event_is_dead_lettered_after_max_attempts_and_can_be_replayed(
    store: stores.InboxStore, clock: FakeClock
) -> None:
    """After max_attempts failures the event is dead; replay brings it back for every handler."""
    dispatcher, handlers = make(store, clock, max_attempts=2, backoff_base=1)
    fail = True

    @handlers.on("stripe")
    async def handler(e: webhooks.InboxEvent) -> None:
        if fail:
            raise ValueError("bad payload")

    row_id = await store.add(event())
    await dispatcher.run_once()
    clock.advance(10)
    await dispatcher.run_once()
    clock.advance(10)
    assert await dispatcher.run_once() == 0
    dead = await store.get(row_id or -1)
    assert dead is not None
    assert (dead.status, dead.attempts) == (EventStatus.DEAD, 2)
    assert dead.last_error is not None
    assert dead.last_error.endswith("handler: ValueError: bad payload")
    fail = False
    assert await store.replay(ids=[row_id or -1], now=clock.time()) == 1
    assert await dispatcher.run_once() == 1
    delivered = await store.get(row_id or -1)
    assert delivered is not None
    assert (delivered.status, delivered.attempts) == (EventStatus.DELIVERED, 1)


async def test_a_retry_runs_only_the_handlers_that_have_not_succeeded(
    store: stores.InboxStore, clock: FakeClock
) -> None:
    """When the second handler fails, the first is not run again on the retry."""
    dispatcher, handlers = make(store, clock, backoff_base=1)
    calls: list[str] = []
    second_fails = [True]

    @handlers.on("stripe", name="first")
    async def first(e: webhooks.InboxEvent) -> None:
        calls.append("first")

    @handlers.on("stripe", name="second")
    async def second(e: webhooks.InboxEvent) -> None:
        calls.append("second")
        if second_fails.pop(0) if second_fails else False:
            raise RuntimeError("once")

    row_id = await store.add(event())
    await dispatcher.run_once()
    clock.advance(5)
    await dispatcher.run_once()
    assert calls == ["first", "second", "second"]
    stored = await store.get(row_id or -1)
    assert stored is not None
    assert (stored.status, stored.handled) == (EventStatus.DELIVERED, ("first", "second"))


async def test_a_crashed_dispatchers_event_is_handled_after_its_lease(
    store: stores.InboxStore, clock: FakeClock
) -> None:
    """An event claimed by a dispatcher that died is handled once its lease runs out."""
    dispatcher, handlers = make(store, clock, handler_timeout=10, lease=20)
    seen: list[int] = []

    @handlers.on("stripe")
    async def handler(e: webhooks.InboxEvent) -> None:
        seen.append(e.attempts)

    await store.add(event())
    abandoned = await store.claim(now=clock.time(), limit=1, lease=20)
    assert len(abandoned) == 1
    assert await dispatcher.run_once() == 0
    clock.advance(20)
    assert await dispatcher.run_once() == 1
    assert seen == [2]


async def test_an_event_no_handler_wants_is_ignored_not_dead(
    store: stores.InboxStore, clock: FakeClock
) -> None:
    """Without a matching handler the event is marked IGNORED and can be replayed later."""
    dispatcher, handlers = make(store, clock)

    @handlers.on("stripe", "other")
    async def unrelated(e: webhooks.InboxEvent) -> None:
        raise AssertionError("must not run")

    row_id = await store.add(event())
    assert await dispatcher.run_once() == 1
    stored = await store.get(row_id or -1)
    assert stored is not None
    assert stored.status is EventStatus.IGNORED


async def test_a_handler_that_hangs_times_out_as_a_failed_attempt(
    store: stores.InboxStore, clock: FakeClock
) -> None:
    """A handler past handler_timeout is cancelled and the attempt recorded as a timeout."""
    dispatcher, handlers = make(store, clock, handler_timeout=0.05, lease=10)

    @handlers.on("stripe")
    async def hangs(e: webhooks.InboxEvent) -> None:
        await asyncio.Event().wait()

    row_id = await store.add(event())
    await dispatcher.run_once()
    stored = await store.get(row_id or -1)
    assert stored is not None
    assert stored.status is EventStatus.PENDING
    assert stored.last_error is not None
    assert "TimeoutError" in stored.last_error


async def test_purge_keeps_finished_events_for_the_dedupe_horizon(
    store: stores.InboxStore, clock: FakeClock
) -> None:
    """Delivered events older than the horizon go, younger ones and dead ones stay."""
    dispatcher, handlers = make(store, clock, dedupe_horizon=100, max_attempts=1)

    @handlers.on("stripe", "a")
    async def ok(e: webhooks.InboxEvent) -> None:
        pass

    @handlers.on("stripe", "boom")
    async def boom(e: webhooks.InboxEvent) -> None:
        raise RuntimeError("no")

    await store.add(event("old"))
    await store.add(event("dead", event_type="boom"))
    await dispatcher.run_once()
    clock.advance(150)
    young = NewEvent(**{**_fields(event("young")), "received_at": clock.time()})
    await store.add(young)
    await dispatcher.run_once()
    assert await dispatcher.purge_expired() == 1
    assert await store.find("stripe", "old") is None
    assert await store.find("stripe", "young") is not None
    assert await store.find("stripe", "dead") is not None
    # Gone from the store, so a redelivery after the horizon is new again.
    assert await store.add(event("old")) is not None


def _fields(e: NewEvent) -> dict[str, object]:
    return {name: getattr(e, name) for name in NewEvent.__dataclass_fields__}


async def test_the_running_dispatcher_handles_new_events_as_they_are_stored(
    store: stores.InboxStore,
) -> None:
    """Started in the background, it handles an event soon after the inbox admits it."""
    handlers = webhooks.Handlers(["stripe"])
    done = asyncio.Event()

    @handlers.on("stripe")
    async def handler(e: webhooks.InboxEvent) -> None:
        done.set()

    # A long poll interval: only the wake-up from admit() can make this quick.
    policy = webhooks.DispatchPolicy(poll_interval=60)
    async with webhooks.Dispatcher(store, handlers, policy=policy) as dispatcher:
        await store.add(event())
        dispatcher.wake()
        await asyncio.wait_for(done.wait(), timeout=10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"concurrency": 0},
        {"backoff_base": -1},
        {"handler_timeout": float("nan")},
        {"handler_timeout": 30, "lease": 30},
        {"dead_retention": 0},
    ],
)
def test_policy_mistakes_are_config_errors(kwargs: dict[str, float]) -> None:
    """Impossible dispatch settings fail when the policy is made."""
    with pytest.raises(ConfigError):
        webhooks.DispatchPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_handler_name_is_used_once_per_source() -> None:
    """Registering one function twice for a source needs distinct names."""
    handlers = webhooks.Handlers(["s"])

    def h(e: webhooks.InboxEvent) -> None:
        pass

    handlers.add("s", "a", h)
    with pytest.raises(ConfigError, match="already registered"):
        handlers.add("s", "b", h)
    handlers.add("s", "b", h, name="h-for-b")
    assert [x.name for x in handlers.match("s", "b")] == ["h-for-b"]
    with pytest.raises(ConfigError):
        handlers.add("s", "", h, name="x")
    with pytest.raises(ConfigError):
        handlers.add("s", "a", "not callable", name="y")  # type: ignore[arg-type]


class FlakyStore(stores.SQLiteInboxStore):
    """A store whose first claims fail: once as a store outage, once as a bug."""

    failures: list[BaseException]

    async def claim(self, *, now: float, limit: int, lease: float) -> list[stores.Lease]:
        if self.failures:
            raise self.failures.pop(0)
        return await super().claim(now=now, limit=limit, lease=lease)


async def test_the_running_dispatcher_survives_store_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage or an unexpected error while claiming is logged, and dispatching goes on."""
    store = FlakyStore(tmp_path / "flaky.db")
    store.failures = [stores.StoreError("database is locked"), RuntimeError("bug")]
    handlers = webhooks.Handlers(["stripe"])
    done = asyncio.Event()

    @handlers.on("stripe")
    async def handler(e: webhooks.InboxEvent) -> None:
        done.set()

    policy = webhooks.DispatchPolicy(poll_interval=0.01)
    async with store, webhooks.Dispatcher(store, handlers, policy=policy):
        await store.add(event())
        await asyncio.wait_for(done.wait(), timeout=10)
    assert "cannot read the inbox store: database is locked" in caplog.text
    assert "webhook dispatcher failed" in caplog.text
