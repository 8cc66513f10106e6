"""`Cache`, the client's cache option: validated, frozen, and resolving ttl by URL path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import tether
from tether._cache_config import Cache
from tether.cache import MemoryCache, SQLiteCache


def test_defaults() -> None:
    """By default: an in-memory backend, the API's headers decide, no client stale-if-error."""
    cache = Cache()
    assert (cache.backend, cache.ttl, cache.stale_if_error) == ("memory", None, None)
    assert cache.ttl_for("/anything") is None


def test_frozen_and_keyword_only(tmp_path: Path) -> None:
    """A value object: fields cannot change, options cannot be passed by position."""
    cache = Cache(backend=SQLiteCache(tmp_path / "c.db"), ttl=60, stale_if_error=300)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cache.ttl = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        Cache(MemoryCache())  # type: ignore[misc]


def test_number_ttl_applies_everywhere() -> None:
    """A number is the forced lifetime for every path, stored as a float."""
    cache = Cache(ttl=3600)
    assert cache.ttl == 3600.0
    assert cache.ttl_for("/v1/devices") == 3600.0


def test_ttl_mapping_first_match_wins() -> None:
    """Path globs are tried in the order given; unmatched paths follow the headers."""
    cache = Cache(ttl={"/v1/devices/*/status": 0, "/v1/devices/*": 300, "*/static/*": 86400})
    assert cache.ttl_for("/v1/devices/7/status") == 0.0
    assert cache.ttl_for("/v1/devices/7") == 300.0
    assert cache.ttl_for("/cdn/static/logo.png") == 86400.0
    assert cache.ttl_for("/v1/users") is None


def test_ttl_mapping_is_copied() -> None:
    """Changing the caller's dict afterwards changes nothing."""
    groups = {"/a/*": 10.0}
    cache = Cache(ttl=groups)
    groups["/b/*"] = 20.0
    assert cache.ttl_for("/b/1") is None


def test_equal_and_hashable_with_a_mapping() -> None:
    """Equal options compare equal, and a mapping ttl does not make the object unhashable."""
    backend = MemoryCache()
    one = Cache(backend=backend, ttl={"/a/*": 1})
    assert one == Cache(backend=backend, ttl={"/a/*": 1})
    assert hash(one) == hash(Cache(backend=backend, ttl={"/a/*": 1}))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "redis"}, "backend"),
        ({"backend": object()}, "backend"),
        ({"ttl": -1}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"ttl": True}, "ttl"),
        ({"ttl": "1h"}, "ttl"),
        ({"ttl": {"/a/*": -5}}, "ttl"),
        ({"ttl": {"": 5}}, "ttl keys"),
        ({"ttl": {3: 5}}, "ttl keys"),
        ({"stale_if_error": -1}, "stale_if_error"),
        ({"stale_if_error": float("nan")}, "stale_if_error"),
    ],
)
def test_invalid_options_raise_config_error(options: dict[str, object], message: str) -> None:
    """Bad values are refused at construction with a ConfigError naming the option."""
    with pytest.raises(tether.ConfigError, match=message):
        Cache(**options)  # type: ignore[arg-type]
