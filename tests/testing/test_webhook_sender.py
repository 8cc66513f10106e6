"""The webhook sender: signed deliveries, seeded duplicates and reordering, stale replays."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

import tether
from tether import webhooks
from tether.testing import FakeClock, MockAPI, MockRequest, Reply, WebhookSender

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """A receiver that verifies each delivery, as a correct application would."""

    def __init__(self, clock: FakeClock, scheme: str, secret: str = SECRET) -> None:
        self.api = MockAPI(clock=clock)
        self.scheme = scheme
        self.secret = secret
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.api.stub("POST", "/hooks", handler=self.handle)

    def handle(self, request: MockRequest, _: Mapping[str, str]) -> Reply:
        try:
            result = webhooks.verify(
                self.scheme,
                secret=self.secret,
                headers=dict(request.headers),
                body=request.body,
                now=self.api.clock.time(),
            )
        except tether.WebhookVerificationError as exc:
            self.refused.append(exc.reason.value)
            return Reply(400, json={"error": exc.reason.value})
        self.accepted.append(result.msg_id or request.json()["n"])
        return Reply(204)


def sender(receiver: Receiver, **options: object) -> WebhookSender:
    return WebhookSender(
        f"{receiver.api.url}/hooks",
        scheme=receiver.scheme,
        secret=receiver.secret,
        clock=receiver.api.clock,
        transport=receiver.api.transport(),
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("scheme", ["standard", "stripe", "github", "slack", "shopify"])
async def test_deliveries_verify_under_each_scheme(scheme: str) -> None:
    """What the sender signs, tether.webhooks.verify accepts, for every scheme used here."""
    receiver = Receiver(FakeClock(), scheme)
    async with sender(receiver) as hooks:
        delivery = await hooks.send({"n": 1, "type": "order.paid"})
    assert delivery.accepted
    assert receiver.refused == []


async def test_duplicates_keep_their_id_and_verify() -> None:
    """A duplicate carries the original id and body with a fresh, valid signature."""
    receiver = Receiver(FakeClock(), "standard")
    async with sender(receiver) as hooks:
        original = await hooks.send({"n": 1})
        receiver.api.clock.advance(3600)  # type: ignore[attr-defined]
        again = await hooks.duplicate(original)
    assert again.msg_id == original.msg_id
    assert again.body == original.body
    assert again.timestamp == original.timestamp + 3600
    assert again.accepted
    assert receiver.accepted == [original.msg_id, original.msg_id]


async def test_stale_replay_is_refused_by_a_correct_receiver() -> None:
    """Resending a captured delivery ten minutes later fails the receiver's freshness check."""
    clock = FakeClock()
    receiver = Receiver(clock, "standard")
    async with sender(receiver) as hooks:
        original = await hooks.send({"n": 1})
        fresh_replay = await hooks.replay(original)
        clock.advance(600)
        stale_replay = await hooks.replay(original)
    assert fresh_replay.accepted
    assert stale_replay.status == 400
    assert stale_replay.kind == "replay"
    assert receiver.refused == ["timestamp_too_old"]


async def test_send_all_duplicates_and_reorders_from_the_seed() -> None:
    """send_all delivers every event at least once, some twice, shuffled, and the same seed
    gives the same order."""
    orders = []
    for _ in range(2):
        receiver = Receiver(FakeClock(), "standard")
        async with sender(receiver, seed=9) as hooks:
            sent = await hooks.send_all([{"n": n} for n in range(10)], duplicates=0.5, reorder=True)
        numbers = [int(d.body.decode().split(":")[1].rstrip("}")) for d in sent]
        orders.append(numbers)
        assert sorted(set(numbers)) == list(range(10))
        assert len(numbers) > 10
        assert all(d.accepted for d in sent)
        copies = [d for d in sent if d.kind == "duplicate"]
        assert {d.msg_id for d in copies} <= {d.msg_id for d in sent if d.kind == "original"}
    assert orders[0] == orders[1]
    assert orders[0] != sorted(orders[0])


async def test_wrong_secret_is_refused() -> None:
    """A receiver with another secret refuses the deliveries: the signature is real."""
    receiver = Receiver(FakeClock(), "github", secret="receiver-secret")
    async with WebhookSender(
        f"{receiver.api.url}/hooks",
        scheme="github",
        secret="sender-secret",
        transport=receiver.api.transport(),
    ) as hooks:
        delivery = await hooks.send({"n": 1})
    assert delivery.status == 400
    assert receiver.refused == ["no_matching_signature"]


async def test_deliveries_over_a_real_socket() -> None:
    """With the default transport the sender posts over loopback to a real server."""
    clock = FakeClock()
    receiver = Receiver(clock, "stripe")
    async with (
        receiver.api.serve() as server,
        WebhookSender(f"{server.url}/hooks", scheme="stripe", secret=SECRET, clock=clock) as hooks,
    ):
        delivery = await hooks.send(b'{"n": 1}')
    assert delivery.accepted


def test_bad_configuration_fails_at_construction() -> None:
    """An unknown scheme or a bad duplicate rate is a ConfigError before anything is sent."""
    with pytest.raises(tether.ConfigError, match="unknown webhook scheme"):
        WebhookSender("http://localhost/hooks", scheme="carrier-pigeon", secret="s")
