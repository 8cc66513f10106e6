"""The hot path's own constructors make the same frozen values as the public ones."""

from __future__ import annotations

import dataclasses

import pytest

from tether.stores import NewEvent
from tether.stores._inbox import new_event
from tether.webhooks import VerifiedWebhook
from tether.webhooks._delivery import lazy_delivery
from tether.webhooks._result import verified


def test_verified_equals_the_dataclass_and_stays_frozen() -> None:
    made = verified("standard", 1, 1_767_225_600, "msg_1")
    assert made == VerifiedWebhook("standard", 1, 1_767_225_600, "msg_1")
    assert hash(made) == hash(VerifiedWebhook("standard", 1, 1_767_225_600, "msg_1"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.msg_id = "other"  # type: ignore[misc]


def test_new_event_sets_every_field_and_stays_frozen() -> None:
    # A distinct value per field, so that two fields set in swapped slots cannot pass.
    values = {
        "source": "stripe",
        "event_id": "evt_1",
        "event_type": "invoice.paid",
        "received_at": 1.5,
        "headers": (("content-type", "application/json"),),
        "body": b"{}",
        "scheme": "standard",
        "secret_index": 2,
        "signed_at": 3,
        "msg_id": "msg_4",
    }
    assert [f.name for f in dataclasses.fields(NewEvent)] == list(values)
    made = new_event(**values)  # type: ignore[arg-type]
    assert made == NewEvent(**values)  # type: ignore[arg-type]
    assert dataclasses.asdict(made) == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.event_id = "evt_2"  # type: ignore[misc]


def test_lazy_headers_are_made_once_and_only_when_read() -> None:
    calls: list[int] = []

    def make() -> dict[str, str]:
        calls.append(1)
        return {"x-id": "42"}

    delivery = lazy_delivery(
        source="s",
        headers=make,
        body=b"{}",
        content_type="application/json",
        verified=verified("standard", 0, 0, "m"),
    )
    assert delivery.json() == {}
    assert calls == []
    assert delivery.headers["x-id"] == "42"
    assert delivery.headers["x-id"] == "42"
    assert calls == [1]
