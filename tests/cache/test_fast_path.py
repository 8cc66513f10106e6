"""The hit path's shortcut agrees with the RFC 9111 decision it stands in for."""

from __future__ import annotations

from email.utils import formatdate

from hypothesis import given, settings
from hypothesis import strategies as st

from tether._core._cache import CacheAction, decide, make_entry
from tether.cache import StoredResponse
from tether.policies._cache import fresh_age

T0 = 1_767_225_600.0

optional_seconds = st.none() | st.integers(min_value=0, max_value=2000)


@settings(max_examples=400, deadline=None)
@given(
    date_offset=st.integers(min_value=-300, max_value=300),
    age=optional_seconds,
    max_age=optional_seconds,
    expires=st.none() | st.just("0") | st.integers(min_value=-500, max_value=2000),
    last_modified=st.none() | st.integers(min_value=-200_000, max_value=100),
    no_cache=st.booleans(),
    must_revalidate=st.booleans(),
    stored_ttl=optional_seconds,
    call_ttl=optional_seconds,
    delay=st.floats(min_value=0, max_value=5),
    laters=st.lists(st.floats(min_value=-10, max_value=5000), min_size=1, max_size=4),
)
def test_fresh_age_matches_decide(
    *,
    date_offset: int,
    age: int | None,
    max_age: int | None,
    expires: str | int | None,
    last_modified: int | None,
    no_cache: bool,
    must_revalidate: bool,
    stored_ttl: int | None,
    call_ttl: int | None,
    delay: float,
    laters: list[float],
) -> None:
    """RFC 9111 §4.2: for a request without Cache-Control, the shortcut says "fresh, this
    old" exactly when `decide` says FRESH with that age, at any later time."""
    headers = {"Date": formatdate(T0 + date_offset, usegmt=True)}
    directives = [f"max-age={max_age}"] if max_age is not None else []
    directives += ["no-cache"] if no_cache else []
    directives += ["must-revalidate"] if must_revalidate else []
    if directives:
        headers["Cache-Control"] = ", ".join(directives)
    if age is not None:
        headers["Age"] = str(age)
    if expires is not None:
        headers["Expires"] = (
            expires if isinstance(expires, str) else formatdate(T0 + expires, usegmt=True)
        )
    if last_modified is not None:
        headers["Last-Modified"] = formatdate(T0 + last_modified, usegmt=True)
    entry = make_entry(
        status=200,
        request_headers={},
        response_headers=headers,
        request_time=T0 - delay,
        response_time=T0,
        ttl=None if stored_ttl is None else float(stored_ttl),
    )
    stored = StoredResponse(entry=entry, body=b"")
    ttl = None if call_ttl is None else float(call_ttl)
    for later in laters:
        now = T0 + later
        decision = decide(entry, method="GET", request_headers=(), now=now, ttl=ttl)
        shortcut = fresh_age(stored, ttl, now)
        if decision.action is CacheAction.FRESH:
            assert shortcut == decision.age
        else:
            assert shortcut is None


def test_memo_is_per_ttl_and_not_compared() -> None:
    """Facts are remembered per ttl on the object; they take no part in equality."""
    entry = make_entry(
        status=200,
        request_headers={},
        response_headers={"Date": formatdate(T0, usegmt=True), "Cache-Control": "max-age=60"},
        request_time=T0,
        response_time=T0,
    )
    stored = StoredResponse(entry=entry, body=b"x")
    assert fresh_age(stored, None, T0 + 30) == 30.0
    assert fresh_age(stored, 10.0, T0 + 30) is None
    assert set(stored.memo) == {None, 10.0}
    assert stored == StoredResponse(entry=entry, body=b"x")
