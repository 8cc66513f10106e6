"""The hub's sections of tether.toml: [hub], [pollers], [streams], [outbox]."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether.spec

WEATHER = """
[integrations.weather]
base_url = "https://api.example.com"
[integrations.weather.endpoints.current]
path = "/current/{city}"
"""


def _load(tmp_path: Path, text: str) -> tether.spec.Spec:
    path = tmp_path / "tether.toml"
    path.write_text(text, encoding="utf-8")
    return tether.spec.load(path, environ={})


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(tether.spec.SpecError) as caught:
        _load(tmp_path, text)
    return [str(problem) for problem in caught.value.problems]


def test_a_full_hub_config_loads(tmp_path: Path) -> None:
    """Every hub section the contract draws validates and keeps its values."""
    spec = _load(
        tmp_path,
        WEATHER
        + """
[hub]
listen = "0.0.0.0:9000"
store = "hub.db"
token = { env = "HUB_TOKEN" }
event_retention = 3600
[pollers.oslo]
integration = "weather"
endpoint = "current"
args = { city = "Oslo" }
interval = 0.5
unavailable_after = 60
[streams.devices]
integration = "weather"
url = "/ws/devices"
subscribe = [{ op = "subscribe" }]
event_type = "device.{kind}"
[outbox]
allow_private = ["127.0.0.0/8"]
[outbox.endpoints.alerts]
url = "http://127.0.0.1:9/hooks"
event_types = ["webhook.*", "data.oslo"]
rate_limit = "10/s"
""",
    )
    model = spec.document.model
    assert model.hub.listen == "0.0.0.0:9000"
    assert model.hub.event_retention == 3600
    assert model.pollers["oslo"].interval == 0.5
    assert model.pollers["oslo"].args == {"city": "Oslo"}
    assert model.streams["devices"].kind == "websocket"
    assert model.outbox.endpoints["alerts"].event_types == ["webhook.*", "data.oslo"]


def test_defaults_need_no_hub_section(tmp_path: Path) -> None:
    """A file without hub sections still loads, with the hub listening on loopback."""
    model = _load(tmp_path, WEATHER).document.model
    assert model.hub.listen == "127.0.0.1:8765"
    assert model.hub.token is None
    assert model.pollers == {}
    assert model.outbox.endpoints == {}


def test_unknown_references_and_bad_values_are_reported_together(tmp_path: Path) -> None:
    """A poller naming a missing integration or endpoint, missing path arguments, a bad
    interval and a stream naming a missing integration are all reported at once, by key."""
    problems = _problems(
        tmp_path,
        WEATHER
        + """
[pollers.a]
integration = "wether"
endpoint = "current"
interval = 5
[pollers.b]
integration = "weather"
endpoint = "nope"
interval = 5
[pollers.c]
integration = "weather"
endpoint = "current"
interval = 0
args = { city = "x" }
[pollers.d]
integration = "weather"
endpoint = "current"
interval = 5
[streams.s]
integration = "nothing"
url = "/ws"
""",
    )
    text = "\n".join(problems)
    assert "pollers.a.integration: no integration named 'wether'" in text
    assert "pollers.b.endpoint: integration 'weather' has no endpoint 'nope'" in text
    assert "pollers.c.interval: Input should be greater than 0" in text
    assert "endpoint 'current' needs args.city" in text
    assert "streams.s.integration: no integration named 'nothing'" in text
    assert all(line.startswith(f"{tmp_path / 'tether.toml'}:") for line in problems)


def test_listening_off_loopback_needs_a_token(tmp_path: Path) -> None:
    """[hub] listen on a public address without a token is refused at the listen key."""
    problems = _problems(tmp_path, '[hub]\nlisten = "0.0.0.0:8765"\n')
    assert len(problems) == 1
    assert "hub.listen: listening on 0.0.0.0 (not loopback) needs hub.token" in problems[0]
    assert ":2:" in problems[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[hub]\nlisten = "8765"\n', "listen must be HOST:PORT"),
        ('[hub]\nlisten = "127.0.0.1:70000"\n', "the port must be 0-65535"),
        ('[outbox]\nallow_private = ["nonsense"]\n', "is not a network"),
        ('[outbox.endpoints.a]\nurl = "ftp://x"\n', "url must be an absolute http(s) URL"),
        ('[outbox.endpoints.a]\nurl = "https://x"\nrate_limit = "lots"\n', "rate_limit"),
        ('[streams.s]\nurl = "ftp://x/y"\n', "url must be a path or an absolute"),
        ('[streams.s]\nurl = "https://x/y"\nkind = "sse"\nsubscribe = [{a = 1}]\n', "websocket"),
    ],
)
def test_bad_hub_values_name_the_reason(tmp_path: Path, text: str, reason: str) -> None:
    """Malformed listen addresses, networks, URLs and rate limits are SpecErrors with a reason."""
    problems = _problems(tmp_path, text)
    assert any(reason in problem for problem in problems), problems


def test_loopback_hosts() -> None:
    """localhost, 127.0.0.0/8 and ::1 count as loopback; anything else does not."""
    from tether.spec._model import is_loopback, split_listen

    assert split_listen("[::1]:80") == ("::1", 80)
    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.1.2.3", "::1"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))  # noqa: S104
