"""Cache backends: the same behaviour in memory, in SQLite and in Redis, bounded in bytes, LRU
first out. Redis is the distributed tests' loopback one (skipped when absent, except under CI)."""

from __future__ import annotations

import sqlite3
import stat
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import tether
from tests.distributed.conftest import delete_prefixed, require_redis
from tether._core._cache import CacheEntry, make_entry
from tether.cache import CacheBackend, MemoryCache, SQLiteCache, StoredResponse
from tether.cache._base import decode_entry, encode_entry

T0 = 1_767_225_600.0


def stored(
    body: bytes = b"body",
    *,
    vary: dict[str, str] | None = None,
    request: dict[str, str] | None = None,
    partition: str = "",
    at: float = T0,
    ttl: float | None = None,
) -> StoredResponse:
    headers = {"Content-Type": "text/plain", "ETag": '"e1"'}
    if vary:
        headers["Vary"] = ", ".join(vary)
    entry = make_entry(
        status=200,
        request_headers={**(vary or {}), **(request or {})},
        response_headers=headers,
        request_time=at,
        response_time=at,
        ttl=ttl,
    )
    return StoredResponse(entry=entry, body=body, partition=partition)


BackendFactory = Callable[[int], CacheBackend]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BackendFactory]:
    """Makes empty backends of one kind; each call is a cache of its own."""
    made: list[CacheBackend] = []
    redis_url = require_redis() if request.param == "redis" else ""
    prefix = f"tt{uuid.uuid4().hex[:12]}"

    def make(max_bytes: int = 2**20) -> CacheBackend:
        backend: CacheBackend
        if request.param == "memory":
            backend = MemoryCache(max_bytes=max_bytes)
        elif request.param == "sqlite":
            backend = SQLiteCache(tmp_path / f"cache{len(made)}.db", max_bytes=max_bytes)
        else:
            from tether.cache import RedisCache

            backend = RedisCache(
                redis=redis_url, prefix=prefix, name=f"c{len(made)}", max_bytes=max_bytes
            )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()
    if redis_url:
        await delete_prefixed(redis_url, prefix)


async def test_round_trip(make_backend: BackendFactory) -> None:
    """What is stored comes back equal: status, fields, Vary'd values, times, ttl and body."""
    backend = make_backend(2**20)
    original = stored(b"\x00\xffbinary", vary={"Accept": "text/plain"}, ttl=60.0)
    await backend.set("k", original)
    assert list(await backend.get("k")) == [original]
    assert list(await backend.get("other")) == []


async def test_variants_live_side_by_side(make_backend: BackendFactory) -> None:
    """RFC 9111 §4.1: responses for different Vary'd values are kept under one key."""
    backend = make_backend(2**20)
    json_variant = stored(b"{}", vary={"Accept": "application/json"})
    text_variant = stored(b"text", vary={"Accept": "text/plain"})
    await backend.set("k", json_variant)
    await backend.set("k", text_variant)
    assert sorted(s.body for s in await backend.get("k")) == [b"text", b"{}"]


async def test_partitions_are_separate_variants(make_backend: BackendFactory) -> None:
    """Responses fetched with different credentials do not replace each other."""
    backend = make_backend(2**20)
    await backend.set("k", stored(b"alice", partition="p-alice"))
    await backend.set("k", stored(b"bob", partition="p-bob"))
    found = {s.partition: s.body for s in await backend.get("k")}
    assert found == {"p-alice": b"alice", "p-bob": b"bob"}


async def test_same_variant_is_replaced(make_backend: BackendFactory) -> None:
    """A newer response for the same variant replaces the old one."""
    backend = make_backend(2**20)
    await backend.set("k", stored(b"old"))
    await backend.set("k", stored(b"new", at=T0 + 5))
    assert [s.body for s in await backend.get("k")] == [b"new"]


async def test_delete_drops_every_variant(make_backend: BackendFactory) -> None:
    """`delete` removes all variants of a key and nothing else."""
    backend = make_backend(2**20)
    await backend.set("k", stored(b"a", vary={"Accept": "a"}))
    await backend.set("k", stored(b"b", vary={"Accept": "b"}))
    await backend.set("j", stored(b"c"))
    await backend.delete("k")
    assert list(await backend.get("k")) == []
    assert [s.body for s in await backend.get("j")] == [b"c"]


async def test_clear(make_backend: BackendFactory) -> None:
    """`clear` empties the cache."""
    backend = make_backend(2**20)
    await backend.set("k", stored())
    await backend.clear()
    assert list(await backend.get("k")) == []


async def test_least_recently_used_is_evicted_by_bytes(make_backend: BackendFactory) -> None:
    """Past max_bytes, the least recently *used* responses go first, not the oldest stored."""
    one = stored(b"x" * 1000).size
    backend = make_backend(one * 3)
    for key in ("a", "b", "c"):
        await backend.set(key, stored(b"x" * 1000))
    await backend.get("a")  # "a" is now the most recently used
    await backend.set("d", stored(b"x" * 1000))
    assert [bool(await backend.get(key)) for key in "abcd"] == [True, False, True, True]


async def test_one_large_response_evicts_several(make_backend: BackendFactory) -> None:
    """A big response pushes out as many small ones as it needs room for."""
    small = stored(b"x" * 100).size
    backend = make_backend(small * 10)
    for index in range(10):
        await backend.set(f"s{index}", stored(b"x" * 100))
    await backend.set("big", stored(b"y" * (small * 5)))
    survivors = [index for index in range(10) if await backend.get(f"s{index}")]
    assert survivors == list(range(6, 10))
    assert await backend.get("big")


async def test_response_larger_than_the_cache_is_not_kept(make_backend: BackendFactory) -> None:
    """A response bigger than max_bytes is not stored, and the variant it replaces is gone."""
    backend = make_backend(2000)
    await backend.set("k", stored(b"small"))
    await backend.set("other", stored(b"kept"))
    await backend.set("k", stored(b"z" * 5000))
    assert list(await backend.get("k")) == []
    assert [s.body for s in await backend.get("other")] == [b"kept"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1MB"])
def test_max_bytes_is_validated(bad: object, tmp_path: Path) -> None:
    """max_bytes must be a positive int."""
    with pytest.raises(tether.ConfigError, match="max_bytes"):
        MemoryCache(max_bytes=bad)  # type: ignore[arg-type]
    with pytest.raises(tether.ConfigError, match="max_bytes"):
        SQLiteCache(tmp_path / "c.db", max_bytes=bad)  # type: ignore[arg-type]


def test_backends_satisfy_the_protocol(tmp_path: Path) -> None:
    """Both backends are `CacheBackend`s; other objects are not."""
    assert isinstance(MemoryCache(), CacheBackend)
    assert isinstance(SQLiteCache(tmp_path / "c.db"), CacheBackend)
    assert not isinstance(object(), CacheBackend)


async def test_memory_cache_accounts_bytes() -> None:
    """The memory backend's size is the sum of what it holds, and drops back to zero."""
    cache = MemoryCache(max_bytes=10_000)
    first, second = stored(b"1" * 10), stored(b"2" * 20, vary={"Accept": "x"})
    await cache.set("k", first)
    await cache.set("k", second)
    assert (cache.size, len(cache)) == (first.size + second.size, 2)
    await cache.delete("k")
    assert (cache.size, len(cache)) == (0, 0)


# -- SQLite specifics --------------------------------------------------------------------------


async def test_sqlite_entries_survive_reopen(tmp_path: Path) -> None:
    """Entries written by one SQLiteCache are read by another on the same file."""
    path = tmp_path / "cache.db"
    first = SQLiteCache(path)
    original = stored(b"persisted", vary={"Accept": "a"}, ttl=3600.0)
    await first.set("k", original)
    await first.aclose()
    second = SQLiteCache(path)
    assert list(await second.get("k")) == [original]
    await second.aclose()


async def test_sqlite_recency_of_reads_survives_close(tmp_path: Path) -> None:
    """Reads are written with the next store or at close, so LRU order outlives the process."""
    path = tmp_path / "cache.db"
    one = stored(b"x" * 1000).size
    first = SQLiteCache(path, max_bytes=one * 3)
    for key in ("a", "b", "c"):
        await first.set(key, stored(b"x" * 1000))
    await first.get("a")
    await first.aclose()
    second = SQLiteCache(path, max_bytes=one * 3)
    await second.set("d", stored(b"x" * 1000))
    assert [bool(await second.get(key)) for key in "abcd"] == [True, False, True, True]
    await second.aclose()


async def test_sqlite_is_reopened_after_close(tmp_path: Path) -> None:
    """A backend used after aclose opens its file again rather than failing."""
    cache = SQLiteCache(tmp_path / "cache.db")
    await cache.set("k", stored(b"one"))
    await cache.aclose()
    assert [s.body for s in await cache.get("k")] == [b"one"]
    await cache.aclose()


async def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    """The file is created 0600 and journals with WAL."""
    path = tmp_path / "cache.db"
    cache = SQLiteCache(path)
    await cache.set("k", stored())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    await cache.aclose()


async def test_sqlite_bound_holds_across_instances(tmp_path: Path) -> None:
    """Two SQLiteCache objects on one file share its byte bound (kept by the file itself)."""
    path = tmp_path / "cache.db"
    one = stored(b"x" * 1000).size
    first, second = SQLiteCache(path, max_bytes=one * 2), SQLiteCache(path, max_bytes=one * 2)
    await first.set("a", stored(b"x" * 1000))
    await second.set("b", stored(b"x" * 1000))
    await first.set("c", stored(b"x" * 1000))
    assert [bool(await second.get(key)) for key in "abc"] == [False, True, True]
    with sqlite3.connect(path) as conn:
        (total,) = conn.execute("SELECT bytes FROM tether_cache_total").fetchone()
        (summed,) = conn.execute("SELECT SUM(size) FROM tether_cache").fetchone()
    assert total == summed == one * 2
    await first.aclose()
    await second.aclose()


async def test_sqlite_file_shrinks_after_eviction(tmp_path: Path) -> None:
    """Evicted pages are given back, so the file follows a lowered bound down."""
    path = tmp_path / "cache.db"

    def file_bytes() -> int:
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            return int(pages * conn.execute("PRAGMA page_size").fetchone()[0])

    large = SQLiteCache(path, max_bytes=4_000_000)
    for index in range(40):
        await large.set(f"k{index}", stored(bytes([index]) * 50_000))
    await large.aclose()
    assert file_bytes() > 2_000_000
    small = SQLiteCache(path, max_bytes=200_000)
    await small.set("new", stored(b"n" * 50_000))
    await small.aclose()
    assert file_bytes() < 400_000


async def test_sqlite_damaged_row_is_a_miss_and_removed(tmp_path: Path) -> None:
    """A row this version cannot read is treated as absent and deleted."""
    path = tmp_path / "cache.db"
    cache = SQLiteCache(path)
    await cache.set("k", stored())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE tether_cache SET meta = '{\"format\": 99}'")
    assert list(await cache.get("k")) == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tether_cache").fetchone() == (0,)
    await cache.aclose()


def test_entry_codec_round_trips_and_rejects_garbage() -> None:
    """encode_entry/decode_entry are inverses; anything else decodes to None."""
    entry: CacheEntry = stored(vary={"Accept": "a"}, ttl=5.0).entry
    assert decode_entry(encode_entry(entry)) == entry
    for garbage in ("", "[]", "{}", '{"format": 1}', "not json"):
        assert decode_entry(garbage) is None
