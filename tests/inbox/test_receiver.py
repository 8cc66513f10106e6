"""The receiver over real HTTP: checks in order, durable acknowledgement, no detail on 401."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tether import FakeClock, stores, webhooks
from tether._errors import ConfigError
from tether.stores import EventStatus, NewEvent, StoreError
from tether.webhooks import _inbox

from ._support import NOW, PLAIN_SECRET, STANDARD_SECRET, serve, standard_request

BODY = b'{"type":"invoice.paid","id":"evt_body_1","data":{"amount":4200}}'
TWILIO_URL = "https://hooks.example.com/twilio"


def sources() -> list[webhooks.Source]:
    return [
        webhooks.Source("std", "/hooks/std", "standard", STANDARD_SECRET),
        webhooks.Source("stripe", "/hooks/stripe", "stripe", PLAIN_SECRET),
        webhooks.Source("github", "/hooks/github", "github", PLAIN_SECRET),
        webhooks.Source("slack", "/hooks/slack", "slack", PLAIN_SECRET),
        webhooks.Source("shopify", "/hooks/shopify", "shopify", PLAIN_SECRET),
        webhooks.Source(
            "twilio", "/hooks/twilio", "twilio", PLAIN_SECRET, options={"url": TWILIO_URL}
        ),
        webhooks.Source(
            "plain", "/hooks/plain", "hmac", PLAIN_SECRET, options={"header": "X-Signature"}
        ),
        webhooks.Source(
            "small",
            "/hooks/small",
            "standard",
            STANDARD_SECRET,
            max_body_size=64,
        ),
        webhooks.Source(
            "custom",
            "/hooks/custom",
            "hmac",
            PLAIN_SECRET,
            options={"header": "X-Signature"},
            id_from="json:data.ref",
            type_from=lambda delivery: delivery.headers.get("X-Kind"),
        ),
    ]


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[webhooks.Inbox]:
    clock = FakeClock(wall=NOW)
    made = webhooks.Inbox(sources(), store=tmp_path / "inbox.db", dispatch=False, clock=clock)
    yield made
    await made.stop()


@pytest.fixture
async def url(inbox: webhooks.Inbox) -> AsyncIterator[str]:
    async with serve(inbox.app) as base:
        yield base


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]
) -> tuple[int, bytes, dict[str, str]]:
    async with http.post(url, data=body, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


def signed(scheme: str, body: bytes, content_type: str = "application/json", **kw: Any) -> dict:
    secret = STANDARD_SECRET if scheme == "standard" else PLAIN_SECRET
    headers = webhooks.sign(scheme, secret=secret, body=body, timestamp=NOW, **kw)
    headers["Content-Type"] = content_type
    return headers


async def test_a_verified_delivery_is_stored_before_the_200(
    inbox: webhooks.Inbox, url: str, http: aiohttp.ClientSession
) -> None:
    """A good delivery gets 200 and is then in the store with its bytes and verification."""
    status, body, _ = await post(http, url + "/hooks/std", BODY, standard_request(BODY))
    assert (status, json.loads(body)) == (200, {"status": "accepted"})
    event = await inbox.store.find("std", "msg_1")
    assert event is not None
    assert event.body == BODY
    assert event.event_type == "invoice.paid"
    assert (event.scheme, event.secret_index, event.signed_at, event.msg_id) == (
        "standard",
        0,
        NOW,
        "msg_1",
    )
    assert event.header("webhook-id") == "msg_1"
    assert event.received_at == NOW
    assert event.status is EventStatus.PENDING


async def test_a_duplicate_gets_200_and_is_not_stored_again(
    inbox: webhooks.Inbox, url: str, http: aiohttp.ClientSession
) -> None:
    """A redelivery of a stored event is acknowledged as a duplicate and changes nothing."""
    first = await post(http, url + "/hooks/std", BODY, standard_request(BODY))
    again = await post(http, url + "/hooks/std", BODY, standard_request(BODY, timestamp=NOW + 5))
    assert first[:2] == (200, b'{"status":"accepted"}')
    assert again[:2] == (200, b'{"status":"duplicate"}')
    assert len(await inbox.store.list()) == 1


async def test_a_bad_signature_is_401_with_no_detail_and_nothing_stored(
    inbox: webhooks.Inbox,
    url: str,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A forged delivery gets an empty 401; the reason is logged, the secret never."""
    headers = standard_request(BODY)
    caplog.set_level(logging.INFO)
    status, body, _ = await post(http, url + "/hooks/std", BODY + b" ", headers)
    assert (status, body) == (401, b"")
    stale = standard_request(BODY, timestamp=NOW - 301)
    assert (await post(http, url + "/hooks/std", BODY, stale))[:2] == (401, b"")
    assert await inbox.store.list() == []
    assert "no_matching_signature" in caplog.text
    assert "timestamp_too_old" in caplog.text
    assert STANDARD_SECRET not in caplog.text
    assert PLAIN_SECRET not in caplog.text


async def test_a_header_sent_twice_is_refused_only_when_the_values_differ(
    inbox: webhooks.Inbox, url: str, http: aiohttp.ClientSession
) -> None:
    """Two different signature headers are 401 (either could be the one checked); a repeat
    of the same value, as some proxies add, is accepted, and both copies are stored."""
    headers = standard_request(BODY, msg_id="msg_twice")
    signature = headers.pop("webhook-signature")
    forged = CIMultiDict(headers)
    forged.add("webhook-signature", signature)
    forged.add("Webhook-Signature", "v1," + "A" * 43 + "=")
    async with http.post(url + "/hooks/std", data=BODY, headers=forged) as response:
        assert (response.status, await response.read()) == (401, b"")
    repeated = CIMultiDict(headers)
    repeated.add("webhook-signature", signature)
    repeated.add("webhook-signature", signature)
    async with http.post(url + "/hooks/std", data=BODY, headers=repeated) as response:
        assert response.status == 200
    (event,) = await inbox.store.list()
    assert [value for name, value in event.headers if name == "webhook-signature"] == [
        signature,
        signature,
    ]


async def test_the_content_type_is_checked_before_the_signature(
    inbox: webhooks.Inbox, url: str, http: aiohttp.ClientSession
) -> None:
    """A body of a type the source does not take is 415, even when correctly signed."""
    headers = standard_request(BODY)
    headers["Content-Type"] = "text/plain"
    status, _, _ = await post(http, url + "/hooks/std", BODY, headers)
    assert status == 415
    headers["Content-Type"] = "Application/JSON; charset=utf-8"
    assert (await post(http, url + "/hooks/std", BODY, headers))[0] == 200
    assert len(await inbox.store.list()) == 1


async def test_an_oversized_body_is_413_whether_declared_or_streamed(
    inbox: webhooks.Inbox, url: str, http: aiohttp.ClientSession
) -> None:
    """Bodies over the source's limit are refused, by Content-Length or while streaming."""
    big = b'{"type":"x","pad":"' + b"a" * 100 + b'"}'
    status, body, _ = await post(http, url + "/hooks/small", big, standard_request(big))
    assert (status, json.loads(body)) == (413, {"error": "payload too large"})

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"a" * 30

    headers = standard_request(b"a" * 120)
    status, _, _ = await post(http, url + "/hooks/small", chunks(), headers)
    assert status == 413
    assert await inbox.store.list() == []


async def test_only_post_is_allowed(url: str, http: aiohttp.ClientSession) -> None:
    """Other methods get 405 naming POST."""
    async with http.get(url + "/hooks/std") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    "case",
    [
        ("stripe", "stripe", {}, "evt_body_1", "invoice.paid"),
        ("github", "github", {"msg_id": "gh-delivery-1"}, "gh-delivery-1", "issues"),
        ("shopify", "shopify", {"msg_id": "shop-wh-1"}, "shop-wh-1", "orders/create"),
        (
            "plain",
            "hmac",
            {"header": "X-Signature"},
            "sha256:" + hashlib.sha256(BODY).hexdigest(),
            "invoice.paid",
        ),
    ],
)
async def test_each_scheme_finds_its_event_id_and_type(
    inbox: webhooks.Inbox,
    url: str,
    http: aiohttp.ClientSession,
    case: tuple[str, str, dict[str, str], str, str],
) -> None:
    """The default id and type come from where each provider puts them, else the body hash."""
    source, scheme, extra, expected_id, expected_type = case
    headers = signed(scheme, BODY, **extra)
    headers["X-GitHub-Event"] = "issues"
    headers["X-Shopify-Topic"] = "orders/create"
    status, _, _ = await post(http, url + f"/hooks/{source}", BODY, headers)
    assert status == 200
    (event,) = await inbox.store.list(source=source)
    assert (event.event_id, event.event_type) == (expected_id, expected_type)


async def test_slack_events_use_event_id_and_the_inner_event_type(
    inbox: webhooks.Inbox, url: str, http: aiohttp.ClientSession
) -> None:
    """A Slack event_callback is keyed by event_id and typed by its inner event."""
    body = b'{"type":"event_callback","event_id":"Ev01","event":{"type":"app_mention"}}'
    status, _, _ = await post(http, url + "/hooks/slack", body, signed("slack", body))
    assert status == 200
    event = await inbox.store.find("slack", "Ev01")
    assert event is not None
    assert event.event_type == "app_mention"


async def test_slack_url_verification_is_answered_not_stored(
    inbox: webhooks.Inbox, url: str, http: aiohttp.ClientSession
) -> None:
    """Slack's signed URL check gets its challenge back; an unsigned one gets 401."""
    challenge = b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = b'{"type":"url_verification","challenge":"' + challenge + b'"}'
    status, answer, _ = await post(http, url + "/hooks/slack", body, signed("slack", body))
    assert (status, answer) == (200, challenge)
    unsigned = {"Content-Type": "application/json"}
    assert (await post(http, url + "/hooks/slack", body, unsigned))[0] == 401
    assert await inbox.store.list() == []


async def test_twilio_form_posts_are_accepted_and_keyed_by_the_idempotency_token(
    inbox: webhooks.Inbox, url: str, http: aiohttp.ClientSession
) -> None:
    """Twilio's form-encoded body verifies against the configured URL and is stored raw."""
    body = b"MessageSid=SM1&Body=hello"
    headers = signed(
        "twilio",
        body,
        content_type="application/x-www-form-urlencoded",
        url=TWILIO_URL,
        msg_id="idem-1",
    )
    status, _, _ = await post(http, url + "/hooks/twilio", body, headers)
    assert status == 200
    event = await inbox.store.find("twilio", "idem-1")
    assert event is not None
    assert event.body == body
    assert event.event_type is None


async def test_custom_id_and_type_extractors(
    inbox: webhooks.Inbox, url: str, http: aiohttp.ClientSession
) -> None:
    """id_from and type_from accept the documented strings and callables."""
    body = b'{"data":{"ref":"order-77"}}'
    headers = signed("hmac", body, header="X-Signature")
    headers["X-Kind"] = "order.created"
    assert (await post(http, url + "/hooks/custom", body, headers))[0] == 200
    event = await inbox.store.find("custom", "order-77")
    assert event is not None
    assert event.event_type == "order.created"


async def test_credentials_in_headers_are_not_stored(
    inbox: webhooks.Inbox, url: str, http: aiohttp.ClientSession
) -> None:
    """An Authorization or Cookie header reaches the store redacted."""
    # Twice: the second delivery finds the header names already decoded.
    for msg_id in ("msg_1", "msg_2"):
        headers = standard_request(BODY, msg_id=msg_id)
        headers["Authorization"] = "Bearer CANARY-token-1234"
        headers["Cookie"] = "session=CANARY-cookie"
        assert (await post(http, url + "/hooks/std", BODY, headers))[0] == 200
        event = await inbox.store.find("std", msg_id)
        assert event is not None
        assert "CANARY" not in json.dumps(event.headers)
        assert event.header("authorization") == "[REDACTED]"


def test_header_names_chosen_by_senders_cannot_grow_memory() -> None:
    """Decoded header names are remembered up to a bound; beyond it they are still decoded."""
    for n in range(_inbox._MAX_NAMES + 100):
        view, stored = _inbox._decode_headers([(f"x-random-{n}".encode(), b"v")])
        assert view.get(f"X-Random-{n}") == "v"
        assert stored == ((f"x-random-{n}", "v"),)
    assert len(_inbox._NAMES) <= _inbox._MAX_NAMES


class BrokenStore(stores.SQLiteInboxStore):
    """A store whose disk is gone: every write fails."""

    async def add(self, event: NewEvent) -> int | None:
        raise StoreError("disk I/O error")


async def test_a_store_failure_is_503_so_the_sender_retries(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """When the commit fails the delivery is not acknowledged: 503 with Retry-After."""
    inbox = webhooks.Inbox(
        sources()[:1],
        store=BrokenStore(tmp_path / "x.db"),
        dispatch=False,
        clock=FakeClock(wall=NOW),
    )
    async with serve(inbox.app) as base:
        status, _, headers = await post(http, base + "/hooks/std", BODY, standard_request(BODY))
    assert status == 503
    assert headers["Retry-After"] == "5"


async def test_the_inbox_mounts_in_a_parent_app(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Mounted under a prefix with the parent's lifespan, it receives and dispatches."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    inbox = webhooks.Inbox(sources()[:1], store=tmp_path / "m.db", clock=FakeClock(wall=NOW))
    handled: list[str] = []

    @inbox.handler("std", "invoice.paid")
    async def on_paid(event: webhooks.InboxEvent) -> None:
        handled.append(event.event_id)

    async def home(_: object) -> PlainTextResponse:
        return PlainTextResponse("home")

    parent = Starlette(
        routes=[Route("/", home), Mount("/webhooks", app=inbox.app)], lifespan=inbox.lifespan
    )
    async with serve(parent) as base:
        status, _, _ = await post(http, base + "/webhooks/hooks/std", BODY, standard_request(BODY))
        assert status == 200
        assert inbox.dispatcher is not None
        assert await inbox.dispatcher.run_once() in (0, 1)
    assert handled == ["msg_1"]


async def test_a_mounted_inbox_without_lifespan_starts_on_first_request(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Parents do not run a mounted app's lifespan; the first delivery opens the store."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    inbox = webhooks.Inbox(
        sources()[:1], store=tmp_path / "lazy.db", dispatch=False, clock=FakeClock(wall=NOW)
    )
    parent = Starlette(routes=[Mount("/w", app=inbox.app)])
    try:
        async with serve(parent) as base:
            status, _, _ = await post(http, base + "/w/hooks/std", BODY, standard_request(BODY))
        assert status == 200
        assert await inbox.store.find("std", "msg_1") is not None
    finally:
        await inbox.stop()


def test_secrets_stay_out_of_reprs() -> None:
    """Neither a Source nor an Inbox shows its secrets."""
    source = webhooks.Source("s", "/s", "github", PLAIN_SECRET)
    inbox = webhooks.Inbox([source], store=":memory:", dispatch=False)
    assert PLAIN_SECRET not in repr(source)
    assert PLAIN_SECRET not in repr(inbox)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"scheme": "svix"}, "unknown scheme"),
        ({"path": "hooks"}, "path must start"),
        ({"name": "bad name"}, "source name"),
        ({"secrets": ""}, "empty"),
        ({"scheme": "twilio"}, "url"),
        ({"id_from": "jsn:id"}, "not understood"),
        ({"type_from": "json:"}, "not understood"),
        ({"tolerance": -1}, "tolerance"),
        ({"options": {"colour": "red"}}, "colour"),
        # Unusable Standard Webhooks keys, also behind a good one during a rotation.
        ({"scheme": "standard", "secrets": "whsec_!!!notbase64"}, "not a valid base64"),
        ({"scheme": "standard", "secrets": "whsk_abc"}, "32 or 64 bytes"),
        ({"scheme": "standard", "secrets": [STANDARD_SECRET, "whsec_!!"]}, "secret #1"),
    ],
)
def test_source_mistakes_are_config_errors(kwargs: dict[str, Any], fragment: str) -> None:
    """A bad source fails when it is built, with a message that names the problem."""
    arguments: dict[str, Any] = {
        "name": "s",
        "path": "/s",
        "scheme": "github",
        "secrets": PLAIN_SECRET,
    }
    arguments.update(kwargs)
    with pytest.raises(ConfigError) as caught:
        webhooks.Source(**arguments)
    assert fragment in str(caught.value)


def test_inbox_mistakes_are_config_errors() -> None:
    """Shared names or paths, no sources, or a handler for an unknown source fail early."""
    one = webhooks.Source("a", "/a", "github", PLAIN_SECRET)
    with pytest.raises(ConfigError, match="share the name"):
        webhooks.Inbox([one, webhooks.Source("a", "/b", "github", PLAIN_SECRET)], store=":memory:")
    with pytest.raises(ConfigError, match="share the path"):
        webhooks.Inbox([one, webhooks.Source("b", "/a", "github", PLAIN_SECRET)], store=":memory:")
    with pytest.raises(ConfigError):
        webhooks.Inbox([], store=":memory:")
    inbox = webhooks.Inbox([one], store=":memory:")
    with pytest.raises(ConfigError, match="no webhook source named 'b'"):
        inbox.handler("b")(lambda event: None)


async def test_routes_join_an_app_of_your_own(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """inbox.routes serve the sources from a user's app, with no prefix and no Mount."""
    from starlette.applications import Starlette

    inbox = webhooks.Inbox(
        sources()[:1], store=tmp_path / "r.db", dispatch=False, clock=FakeClock(wall=NOW)
    )
    app = Starlette(routes=inbox.routes, lifespan=inbox.lifespan)
    async with serve(app) as base:
        status, _, _ = await post(http, base + "/hooks/std", BODY, standard_request(BODY))
        assert status == 200
        assert await inbox.store.find("std", "msg_1") is not None


async def test_a_failing_extractor_falls_back_instead_of_refusing_the_delivery(
    tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """An id_from that raises is logged; the event is stored under the body's hash."""

    def broken(delivery: webhooks.ReceivedWebhook) -> str | None:
        return delivery.headers["X-Missing"]

    source = webhooks.Source(
        "std", "/hooks/std", "standard", STANDARD_SECRET, id_from=broken, type_from=broken
    )
    inbox = webhooks.Inbox(
        [source], store=tmp_path / "x.db", dispatch=False, clock=FakeClock(wall=NOW)
    )
    async with serve(inbox.app) as base:
        status, _, _ = await post(http, base + "/hooks/std", BODY, standard_request(BODY))
    assert status == 200
    assert "id_from of source std failed" in caplog.text
    digest = "sha256:" + hashlib.sha256(BODY).hexdigest()
    async with stores.SQLiteInboxStore(tmp_path / "x.db") as reopened:
        event = await reopened.find("std", digest)
    assert event is not None
    assert event.event_type is None
