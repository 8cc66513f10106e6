"""Token stores: compare-and-swap, file permissions, atomic replacement, cross-process locks.

The conformance suite runs on every store: memory, file, SQLite and Redis (the distributed
tests' loopback Redis: skipped when absent, except under CI=true).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.distributed.conftest import delete_prefixed, require_redis
from tether.auth import FileTokenStore, MemoryTokenStore, SQLiteTokenStore, TokenSet, TokenStore


def token(version: int, value: str = "at") -> TokenSet:
    return TokenSet(
        access_token=SecretStr(f"{value}-{version}"),
        refresh_token=SecretStr(f"rt-{version}"),
        expires_at=1000.0 + version,
        issued_at=10.0,
        version=version,
    )


@pytest.fixture(params=["memory", "file", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TokenStore]:
    """An empty token store of each kind."""
    if request.param == "memory":
        yield MemoryTokenStore()
    elif request.param == "file":
        yield FileTokenStore(tmp_path / "tokens.json")
    elif request.param == "sqlite":
        yield SQLiteTokenStore(tmp_path / "tokens.db")
    else:
        from tether.distributed import RedisTokenStore

        url = require_redis()
        prefix = f"tt{uuid.uuid4().hex[:12]}"
        redis_store = RedisTokenStore(redis=url, prefix=prefix)
        yield redis_store
        await redis_store.aclose()
        await delete_prefixed(url, prefix)


class TestConformance:
    async def test_round_trip(self, store: TokenStore) -> None:
        """What is saved is loaded back unchanged; other keys stay empty."""
        assert await store.load("k") is None
        assert await store.save("k", token(1), expected_version=None)
        assert await store.load("k") == token(1)
        assert await store.load("other") is None

    async def test_compare_and_swap(self, store: TokenStore) -> None:
        """A save based on a stale version is refused and leaves the newer token in place."""
        assert await store.save("k", token(1), expected_version=None)
        assert await store.save("k", token(2), expected_version=1)
        assert not await store.save("k", token(2, "late"), expected_version=1)
        assert not await store.save("k", token(1, "again"), expected_version=None)
        loaded = await store.load("k")
        assert loaded is not None
        assert loaded.access_token.get_secret_value() == "at-2"

    async def test_delete(self, store: TokenStore) -> None:
        """A deleted key loads as None and can be saved afresh."""
        await store.save("k", token(1), expected_version=None)
        await store.delete("k")
        assert await store.load("k") is None
        assert await store.save("k", token(1), expected_version=None)

    async def test_concurrent_swaps_have_one_winner(self, store: TokenStore) -> None:
        """Of many saves from the same version, exactly one succeeds."""
        await store.save("k", token(1), expected_version=None)
        results = await asyncio.gather(
            *(store.save("k", token(2, f"v{i}"), expected_version=1) for i in range(10))
        )
        assert results.count(True) == 1


class TestFile:
    async def test_created_0600_and_never_world_readable(self, tmp_path: Path) -> None:
        """The token file is created with mode 0600."""
        path = tmp_path / "sub" / "tokens.json"
        store = FileTokenStore(path)
        await store.save("k", token(1), expected_version=None)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        data = json.loads(path.read_text())
        assert data["format"] == 1
        assert data["tokens"]["k"]["refresh_token"] == "rt-1"

    async def test_replacement_is_atomic(self, tmp_path: Path) -> None:
        """Each save replaces the file by rename: the inode changes and no temp file is left."""
        path = tmp_path / "tokens.json"
        store = FileTokenStore(path)
        await store.save("k", token(1), expected_version=None)
        before = path.stat().st_ino
        await store.save("k", token(2), expected_version=1)
        assert path.stat().st_ino != before
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []

    async def test_two_objects_one_file_share_state(self, tmp_path: Path) -> None:
        """Two store objects on one path see each other's writes and have one identity."""
        a, b = FileTokenStore(tmp_path / "t.json"), FileTokenStore(tmp_path / "t.json")
        assert a.identity == b.identity
        await a.save("k", token(1), expected_version=None)
        assert await b.load("k") == token(1)
        assert not await b.save("k", token(1), expected_version=None)

    async def test_corrupt_file_is_an_auth_error(self, tmp_path: Path) -> None:
        """A file that is not our JSON raises AuthError instead of being overwritten."""
        from tether import AuthError

        path = tmp_path / "t.json"
        path.write_text("{not json")
        with pytest.raises(AuthError, match="not valid JSON"):
            await FileTokenStore(path).load("k")

    @pytest.mark.parametrize(
        "entry", ['"text"', '{"access_token": "a", "version": "x"}', '{"version": 1}']
    )
    async def test_unreadable_entry_is_an_auth_error(self, tmp_path: Path, entry: str) -> None:
        """A token entry of the wrong shape raises AuthError naming the file, not a TypeError."""
        from tether import AuthError

        path = tmp_path / "t.json"
        path.write_text(f'{{"format": 1, "tokens": {{"k": {entry}}}}}')
        with pytest.raises(AuthError, match="unreadable"):
            await FileTokenStore(path).load("k")

    async def test_lock_excludes_a_second_holder(self, tmp_path: Path) -> None:
        """While one holder has the refresh lock, a second waits and then times out."""
        from tether import AuthError

        store = FileTokenStore(tmp_path / "t.json", lock_timeout=0.2)
        async with store.lock("k"):
            with pytest.raises(AuthError, match="timed out"):
                async with FileTokenStore(tmp_path / "t.json", lock_timeout=0.2).lock("k"):
                    pass
        async with store.lock("k"):
            pass


class TestSQLite:
    async def test_created_0600(self, tmp_path: Path) -> None:
        """The database file is created with mode 0600."""
        path = tmp_path / "t.db"
        await SQLiteTokenStore(path).save("k", token(1), expected_version=None)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    async def test_lease_lock(self, tmp_path: Path) -> None:
        """The lease lock excludes a second holder until released."""
        from tether import AuthError

        path = tmp_path / "t.db"
        async with SQLiteTokenStore(path).lock("k"):
            with pytest.raises(AuthError, match="timed out"):
                async with SQLiteTokenStore(path, lock_timeout=0.2).lock("k"):
                    pass
        async with SQLiteTokenStore(path).lock("k"):
            pass
