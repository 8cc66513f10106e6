"""The stores package surface and the PostgreSQL test policy."""

from __future__ import annotations

import pytest

import tether.stores
from tether import webhooks

from . import conftest


def _ruff_order(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_stores_all_is_sorted_and_every_name_resolves() -> None:
    """tether.stores.__all__ is sorted the way ruff keeps it, and each name exists."""
    assert list(tether.stores.__all__) == sorted(tether.stores.__all__, key=_ruff_order)
    for name in tether.stores.__all__:
        assert hasattr(tether.stores, name), name


def test_the_inbox_names_are_exported_from_webhooks() -> None:
    """The receiver's public names live in tether.webhooks, the records are the stores' own."""
    for name in ("Inbox", "Source", "Dispatcher", "DispatchPolicy", "Handlers", "ReceivedWebhook"):
        assert name in webhooks.__all__
    assert webhooks.InboxEvent is tether.stores.InboxEvent
    assert webhooks.EventStatus is tether.stores.EventStatus


async def test_unreachable_postgres_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without PostgreSQL its tests are skipped, except under CI=true, where they fail."""
    monkeypatch.setitem(conftest._DSN_CACHE, "dsn", (None, "connection refused"))
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        await conftest.postgres_dsn()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="connection refused"):
        await conftest.postgres_dsn()
