"""The outbox policy's arithmetic and the API's input checks; no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether import webhooks
from tether._errors import ConfigError
from tether.stores._outbox_sqlite import SQLiteOutboxStore
from tether.webhooks import DEFAULT_SCHEDULE, OutboxPolicy


def test_the_default_schedule_is_immediately_then_1m_5m_25m_2h_10h() -> None:
    """Five retries after the first attempt, at the documented delays."""
    assert DEFAULT_SCHEDULE == (60, 300, 1500, 7200, 36000)
    policy = OutboxPolicy()
    delays = [policy.retry_delay(n, schedule=None, rand=0.5) for n in range(1, 7)]
    assert delays == [60, 300, 1500, 7200, 36000, None]


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_jitter_stays_within_its_fraction(rand: float) -> None:
    """Each delay moves by at most `jitter` of itself, either way."""
    delay = OutboxPolicy(jitter=0.2).retry_delay(1, schedule=(100.0,), rand=rand)
    assert delay is not None
    assert 80.0 <= delay <= 120.0
    assert delay == pytest.approx(100.0 * (1 + 0.2 * (2 * rand - 1)))


def test_retry_after_only_pushes_later_and_is_capped() -> None:
    """Advice beyond the schedule wins up to max_retry_after; shorter advice changes nothing."""
    policy = OutboxPolicy(max_retry_after=3600)
    assert policy.honour_retry_after(60, None) == 60
    assert policy.honour_retry_after(60, 5) == 60
    assert policy.honour_retry_after(60, 900) == 900
    assert policy.honour_retry_after(60, 86_400) == 3600
    assert policy.honour_retry_after(7200, 86_400) == 7200


def test_leases_follow_the_longest_request_timeout() -> None:
    """A lease outlasts the longest attempt an endpoint may make by the grace period."""
    assert OutboxPolicy(max_timeout=20, timeout=10, lease_grace=5).lease_seconds == 25


@pytest.mark.parametrize(
    "options",
    [
        {"schedule": "60,300"},
        {"schedule": [-1]},
        {"schedule": [float("nan")]},
        {"jitter": 1.0},
        {"concurrency": 0},
        {"timeout": 90, "max_timeout": 60},
        {"disable_after": 0},
        {"breaker": "yes"},
    ],
)
def test_bad_policies_are_config_errors(options: dict[str, object]) -> None:
    """Each invalid setting is refused at construction with a ConfigError."""
    with pytest.raises(ConfigError):
        OutboxPolicy(**options)  # type: ignore[arg-type]


async def test_enqueue_and_endpoint_inputs_are_checked_before_any_write(tmp_path: Path) -> None:
    """Bad types, keys, payloads, headers, secrets and options fail with a reason, unstored."""
    box = webhooks.Outbox(
        SQLiteOutboxStore(tmp_path / "o.db"), policy=OutboxPolicy(max_payload=100)
    )
    secret = "whsec_" + "c2VjcmV0LWZvci10aGUtY2hlY2stdGVzdHMtb25seQ=="
    async with box:
        for call in (
            box.enqueue("", {}),
            box.enqueue("a\nb", {}),
            box.enqueue("a", {"x": "y" * 200}),
            box.enqueue("a", {1, 2}),
            box.enqueue("a", {}, idempotency_key="k" * 300),
            box.add_endpoint("https://example.com/", headers={"webhook-id": "mine"}),
            box.add_endpoint("https://example.com/", headers={"X-Bad": "a\r\nb"}),
            box.add_endpoint("https://example.com/", secret="not-a-whsec"),
            box.add_endpoint("https://example.com/", secret="whsec_!!!" + secret[9:]),
            box.add_endpoint("https://example.com/", rate_limit="fast"),
            box.add_endpoint("https://example.com/", timeout=600),
            box.add_endpoint("https://example.com/", endpoint_id="has space"),
            box.add_endpoint("https://example.com/", schedule=[-5]),
        ):
            with pytest.raises(ConfigError) as raised:
                await call
            assert secret[6:] not in str(raised.value)
        assert await box.deliveries() == []
        assert await box.endpoints() == []
        # bytes go out as they are; anything else as compact JSON.
        await box.add_endpoint("https://example.com/")
        raw = await box.enqueue("a", b'{"raw": true}')
        made = await box.enqueue("a", {"raw": False})
        leases = await box.store.claim(now=box.clock.time(), limit=5, lease=60)
        bodies = {lease.delivery.msg_id: lease.delivery.payload for lease in leases}
        assert bodies == {raw: b'{"raw": true}', made: b'{"raw":false}'}
