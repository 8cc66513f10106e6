"""The lease store conformance suite: the same behaviour on SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.inbox.conftest import drop_schema, postgres_dsn
from tests.stores.conftest import LeaseBackend
from tether._errors import ConfigError
from tether.stores import (
    HeldLease,
    LeaseStore,
    PostgresLeaseStore,
    SQLiteLeaseStore,
    StoreError,
    open_lease_store,
)

TTL = 30.0
#: Long enough for a loaded machine to finish the test's steps before it runs out.
SHORT = 0.5


async def test_a_free_lease_is_granted(leases: LeaseBackend) -> None:
    """A free name is granted to the first holder, until now + ttl by the store's clock."""
    store = leases.make()
    before = leases.now()
    lease = await store.acquire("poller:oslo", "hub-a", TTL)
    after = leases.now()
    assert lease is not None
    assert (lease.name, lease.holder) == ("poller:oslo", "hub-a")
    assert lease.fence >= 1
    assert before + TTL - 0.01 <= lease.expires_at <= after + TTL + 0.01
    assert await store.current("poller:oslo") == lease
    assert isinstance(store, LeaseStore)


async def test_a_live_lease_is_denied_to_others(leases: LeaseBackend) -> None:
    """While one holder's lease is live, another holder gets None and the lease is unchanged."""
    first, second = leases.make(), leases.make()
    held = await first.acquire("job", "hub-a", TTL)
    assert held is not None
    assert await second.acquire("job", "hub-b", TTL) is None
    assert await second.current("job") == held
    other = await second.acquire("other-job", "hub-b", TTL)
    assert other is not None  # names are independent


async def test_renewal_keeps_the_fence_and_extends_expiry(leases: LeaseBackend) -> None:
    """The holder acquiring again renews: same fence, a later expiry."""
    store = leases.make()
    held = await store.acquire("job", "hub-a", TTL)
    renewed = await store.acquire("job", "hub-a", 2 * TTL)
    assert held is not None
    assert renewed is not None
    assert renewed.fence == held.fence
    assert renewed.expires_at > held.expires_at
    assert await store.current("job") == renewed


async def test_release_frees_it_and_the_fence_survives(leases: LeaseBackend) -> None:
    """A released lease is free at once; the next grant, even to the same holder, is fenced
    higher; releasing twice reports False."""
    first, second = leases.make(), leases.make()
    held = await first.acquire("job", "hub-a", TTL)
    assert held is not None
    assert await first.release(held)
    assert await first.current("job") is None
    assert not await first.release(held)
    taken = await second.acquire("job", "hub-b", TTL)
    assert taken is not None
    assert taken.fence > held.fence
    assert await second.release(taken)
    again = await first.acquire("job", "hub-a", TTL)
    assert again is not None
    assert again.fence > taken.fence


async def test_an_expired_lease_goes_to_the_next_holder(leases: LeaseBackend) -> None:
    """Once a lease runs out (by the store's clock) another holder gets it with a larger fence,
    and the old holder can neither renew it nor release it."""
    slow, fast = leases.make(), leases.make()
    stale = await slow.acquire("job", "hub-a", SHORT)
    assert stale is not None
    await leases.let_expire(slow, "job", SHORT)
    assert await slow.current("job") is None
    taken = await fast.acquire("job", "hub-b", TTL)
    assert taken is not None
    assert taken.fence > stale.fence
    assert await slow.acquire("job", "hub-a", TTL) is None
    assert not await slow.release(stale)
    assert await fast.current("job") == taken


async def test_fences_strictly_increase_across_holders(leases: LeaseBackend) -> None:
    """Holder after holder, by release or by expiry, every grant's fence is larger."""
    store = leases.make()
    fences = []
    for n in range(6):
        lease = await store.acquire("job", f"hub-{n % 2}", SHORT if n % 2 else TTL)
        assert lease is not None
        fences.append(lease.fence)
        if n % 2:
            await leases.let_expire(store, "job", SHORT)
        else:
            assert await store.release(lease)
    assert fences == sorted(set(fences))


async def test_twenty_racing_acquirers_have_one_winner(leases: LeaseBackend) -> None:
    """Twenty holders on four store objects race for one free lease: exactly one wins."""
    stores = [leases.make() for _ in range(4)]
    for store in stores:
        await store.open()
    results = await asyncio.gather(
        *(stores[n % 4].acquire("job", f"hub-{n}", TTL) for n in range(20))
    )
    winners = [lease for lease in results if lease is not None]
    assert len(winners) == 1
    assert await stores[0].current("job") == winners[0]


async def test_racing_processes_have_one_winner(leases: LeaseBackend) -> None:
    """Three processes of seven acquirers each, released at once, grant the lease exactly once."""
    worker = Path(__file__).with_name("_race_worker.py")
    procs = [
        subprocess.Popen(  # noqa: S603 - our own worker, with this interpreter
            [
                sys.executable,
                str(worker),
                leases.kind,
                leases.target,
                leases.namespace,
                "job",
                f"proc{p}",
                "7",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line.strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [await asyncio.to_thread(proc.communicate, timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert all(proc.returncode == 0 for proc in procs)
    granted = [line for out, _ in outputs for line in out.split() if line != "-"]
    assert len(granted) == 1
    current = await leases.make().current("job")
    assert current is not None
    assert current.holder.startswith("proc")


async def test_release_of_someone_elses_lease_is_refused(leases: LeaseBackend) -> None:
    """A lease object that is not the current grant (wrong holder or fence) frees nothing."""
    store = leases.make()
    held = await store.acquire("job", "hub-a", TTL)
    assert held is not None
    forged = HeldLease("job", "hub-b", held.fence, held.expires_at)
    older = HeldLease("job", "hub-a", held.fence - 1, held.expires_at)
    assert not await store.release(forged)
    assert not await store.release(older)
    assert await store.current("job") == held


@pytest.mark.parametrize(
    ("name", "holder", "ttl"),
    [
        ("", "h", 1.0),
        ("job", "", 1.0),
        ("job", "h", 0),
        ("job", "h", -1.0),
        ("job", "h", math.nan),
        ("job", "h", math.inf),
        ("job", "h", True),
        ("job\n", "h", 1.0),
    ],
)
async def test_bad_arguments_are_config_errors(
    leases: LeaseBackend, name: str, holder: str, ttl: float
) -> None:
    """Empty or unprintable names and holders, and ttls that are not positive finite seconds,
    raise ConfigError before any I/O."""
    store = leases.make()
    with pytest.raises(ConfigError):
        await store.acquire(name, holder, ttl)
    with pytest.raises(ConfigError):
        await store.release("job")  # type: ignore[arg-type]


def test_open_lease_store_picks_the_backend(tmp_path: Path) -> None:
    """A path or sqlite:// URL is SQLite, postgresql:// PostgreSQL, redis:// Redis; anything
    else is a ConfigError that shows no password."""
    from tether.distributed import RedisLeaseStore

    assert isinstance(open_lease_store(str(tmp_path / "l.db")), SQLiteLeaseStore)
    assert isinstance(open_lease_store("sqlite:///l.db"), SQLiteLeaseStore)
    pg = open_lease_store("postgresql://app:pw@127.0.0.1/app", schema="hub")
    assert isinstance(pg, PostgresLeaseStore)
    assert pg.schema == "hub"
    assert "pw" not in repr(pg)
    redis_store = open_lease_store("redis://:s3cret@127.0.0.1:6379/0")
    assert isinstance(redis_store, RedisLeaseStore)
    assert "s3cret" not in repr(redis_store)
    for bad in ("", "ftp://x/y", "sqlite://"):
        with pytest.raises(ConfigError):
            open_lease_store(bad)


async def test_an_unreachable_redis_raises_store_error() -> None:
    """Leases are not advisory: without Redis every call raises StoreError, password hidden."""
    from tether.distributed import RedisLeaseStore

    store = RedisLeaseStore(redis="redis://:s3cret-pw@127.0.0.1:1/0")
    for call in (store.open(), store.acquire("job", "h", 1.0), store.current("job")):
        with pytest.raises(StoreError) as caught:
            await call
        assert "s3cret" not in str(caught.value)
    with pytest.raises(StoreError):
        await store.release(HeldLease("job", "h", 1, 0.0))
    await store.aclose()


async def test_an_unreachable_postgres_raises_store_error() -> None:
    """A PostgreSQL store that cannot connect raises StoreError naming no password."""
    store = PostgresLeaseStore("postgresql://app:s3cret-pw@127.0.0.1:1/app")
    with pytest.raises(StoreError) as caught:
        await store.acquire("job", "h", 1.0)
    assert "s3cret" not in str(caught.value)
    await store.aclose()


async def test_postgres_store_shares_a_lent_pool_and_never_closes_it() -> None:
    """Given an asyncpg pool instead of a DSN, the store uses it and leaves it open."""
    import asyncpg

    dsn = await postgres_dsn()
    schema = f"tether_lease_{uuid.uuid4().hex[:12]}"
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        store = PostgresLeaseStore(pool, schema=schema)
        lease = await store.acquire("job", "hub-a", TTL)
        assert lease is not None
        await store.aclose()
        assert await pool.fetchval("SELECT 1") == 1
        other = PostgresLeaseStore(dsn, schema=schema)
        assert await other.current("job") == lease
        await other.aclose()
    finally:
        await pool.close()
        await drop_schema(dsn, schema)
