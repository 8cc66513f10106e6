"""Resolving an integration: ${ENV} and secret files, provenance, and the runtime objects."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

import tether
import tether.spec
from tether.pagination import Cursor, LinkHeader
from tether.testing import MockAPI, Reply

from .conftest import WriteSpec

CANARY = "canary-7f3a9c-secret"


class Weather(BaseModel):
    name: str
    temp: float


def test_env_references_expand_with_defaults_and_escapes(write_spec: WriteSpec) -> None:
    """`${NAME}`, `${NAME:-default}` and `$${` (a literal `${`) expand as written."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://${HOST}/v1"\n'
        'headers = { A = "${UNSET:-fallback}", B = "$${literal}" }\n',
        {"HOST": "api.example.com"},
    )
    integration = spec.integration("x")
    assert integration.base_url == "https://api.example.com/v1"
    assert integration.client_options()["headers"] == {"A": "fallback", "B": "${literal}"}


def test_missing_variable_is_a_problem_with_its_name_and_line(write_spec: WriteSpec) -> None:
    """An unset variable names itself and the line that needs it; client() raises."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x.example"\n[integrations.x.auth]\n'
        'type = "bearer"\ntoken = "${X_TOKEN}"\n'
    )
    integration = spec.integration("x")
    (problem,) = integration.problems
    assert "X_TOKEN is not set" in problem.message
    assert problem.origin is not None
    assert problem.origin.line == 5
    with pytest.raises(tether.spec.SpecError, match="X_TOKEN"):
        integration.client()


def test_one_integrations_missing_variable_does_not_affect_another(write_spec: WriteSpec) -> None:
    """Loading succeeds and the integration whose variables are set works."""
    spec = write_spec(
        '[integrations.a]\nbase_url = "https://a"\nauth = { type = "bearer", token = "${A}" }\n'
        '[integrations.b]\nbase_url = "https://b"\nauth = { type = "bearer", token = "${B}" }\n',
        {"B": "b-token"},
    )
    assert spec.integration("a").problems
    assert spec.integration("b").problems == ()


def test_secret_files_are_read_relative_to_the_spec(write_spec: WriteSpec, tmp_path: Path) -> None:
    """`{ file = ... }` reads the file beside the spec; one trailing newline is dropped."""
    (tmp_path / "key.txt").write_text(CANARY + "\n", encoding="utf-8")
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x"\n'
        'auth = { type = "api_key", name = "k", value = { file = "key.txt" } }\n'
    )
    integration = spec.integration("x")
    assert integration.problems == ()
    assert integration.redactor().text(f"a {CANARY} b") == "a [REDACTED] b"
    (setting,) = [s for s in integration.settings() if s.key.endswith("auth.value")]
    assert setting.origin.kind == "secret_file"
    assert setting.origin.detail == "key.txt"


def test_unreadable_secret_file_is_a_problem(write_spec: WriteSpec) -> None:
    """A secret file that is missing is reported with its path, never a traceback."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x"\n'
        'auth = { type = "bearer", token = { file = "absent.txt" } }\n'
    )
    (problem,) = spec.integration("x").problems
    assert "cannot read secret file absent.txt" in problem.message


def test_env_table_form_reads_the_variable(write_spec: WriteSpec) -> None:
    """`{ env = "NAME" }` is the explicit form of `"${NAME}"`."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x"\n'
        'auth = { type = "bearer", token = { env = "TOK" } }\n',
        {"TOK": CANARY},
    )
    (setting,) = [s for s in spec.integration("x").settings() if s.key.endswith("token")]
    assert setting.origin.kind == "env"
    assert setting.origin.detail == "TOK"


def test_inline_secret_is_accepted_with_a_warning(write_spec: WriteSpec) -> None:
    """A literal secret works but is flagged: secrets belong in the environment or a file."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x"\n'
        f'auth = {{ type = "bearer", token = "{CANARY}" }}\n'
    )
    integration = spec.integration("x")
    assert integration.problems == ()
    (warning,) = integration.warnings
    assert "inline" in warning.message
    assert CANARY not in str(warning)


def test_settings_never_carry_secret_values(write_spec: WriteSpec) -> None:
    """Every secret shows as [REDACTED] (or "(not set)") in the resolved settings."""
    spec = write_spec(
        '[integrations.x]\npreset = "zoho"\n',
        {"ZOHO_CLIENT_ID": "cid", "ZOHO_CLIENT_SECRET": CANARY, "ZOHO_REFRESH_TOKEN": CANARY + "r"},
    )
    settings = spec.integration("x").settings()
    assert all(CANARY not in s.value and CANARY not in str(s.origin) for s in settings)
    secrets = {s.key.rsplit(".", 1)[-1]: s.value for s in settings if s.secret}
    assert secrets == {"client_secret": "[REDACTED]", "refresh_token": "[REDACTED]"}


def test_flow_control_options_become_client_options(write_spec: WriteSpec) -> None:
    """timeout, retry, rate_limit, breaker, bulkhead and cache map onto Client options."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x"\n'
        "timeout = { total = 12, connect = 3 }\n"
        "retry = { attempts = 5, statuses = [429, 503], budget = false }\n"
        'rate_limit = ["10/s", { rate = 100, per = 60, burst = 5 }]\n'
        "breaker = { failure_rate = 0.25, minimum_calls = 4 }\n"
        "bulkhead = { max_concurrent = 3 }\n"
        "cache = { ttl = 30 }\n"
    )
    options = spec.integration("x").client_options()
    assert options["timeout"] == tether.Timeout(total=12, connect=3, attempt=30.0)
    retry = options["retry"]
    assert retry.attempts == 5
    assert retry.statuses == frozenset({429, 503})
    assert retry.budget is None
    assert options["rate_limit"][0] == "10/s"
    assert options["rate_limit"][1] == tether.RateLimit(rate=100, per=60, burst=5)
    assert options["breaker"].failure_rate == 0.25
    assert options["breaker"].minimum_calls == 4
    assert options["bulkhead"] == tether.Bulkhead(max_concurrent=3)
    assert options["cache"].ttl == 30
    spec.client("x")  # the Client accepts every option


def test_retry_false_disables_retries(write_spec: WriteSpec) -> None:
    """`retry = false` passes retry=None."""
    spec = write_spec('[integrations.x]\nbase_url = "https://x"\nretry = false\n')
    assert spec.integration("x").client_options()["retry"] is None


def test_regions_pick_the_base_url_and_an_override_wins(write_spec: WriteSpec) -> None:
    """`region` selects from `regions`; integration(region=...) overrides it."""
    spec = write_spec(
        '[integrations.x]\nregion = "us"\n'
        'regions = { us = "https://us.example", eu = "https://eu.example" }\n'
    )
    assert spec.integration("x").base_url == "https://us.example"
    assert spec.integration("x", region="eu").base_url == "https://eu.example"
    problems = spec.integration("x", region="mars").problems
    assert "no region 'mars'" in problems[0].message


def test_endpoint_arguments_fill_the_path_quoted(write_spec: WriteSpec) -> None:
    """Placeholders are filled and quoted whole; the rest go to the query for GET."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x"\n[integrations.x.endpoints.item]\n'
        'path = "/items/{id}"\nparams = { expand = "all" }\n'
    )
    call = spec.integration("x").build_call("item", {"id": "a/../b?c", "q": "1"})
    assert call.path == "/items/a%2F..%2Fb%3Fc"
    assert call.params == {"expand": "all", "q": "1"}
    with pytest.raises(tether.ConfigError, match=r"needs id=\.\.\."):
        spec.integration("x").build_call("item", {})


def test_post_endpoints_send_arguments_as_json_or_form(write_spec: WriteSpec) -> None:
    """POST sends arguments as JSON unless the endpoint says form."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x"\n'
        '[integrations.x.endpoints.j]\nmethod = "post"\npath = "/j"\n'
        '[integrations.x.endpoints.f]\nmethod = "POST"\npath = "/f"\nargs = "form"\n'
    )
    integration = spec.integration("x")
    assert integration.build_call("j", {"a": 1}).json == {"a": 1}
    assert integration.build_call("f", {"a": "1"}).data == {"a": "1"}


def test_paginator_is_inherited_unless_the_endpoint_says_none(write_spec: WriteSpec) -> None:
    """Endpoints use the integration's paginator; `paginator = "none"` turns it off."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x"\npaginator = { type = "link_header" }\n'
        '[integrations.x.endpoints.list]\npath = "/l"\n'
        '[integrations.x.endpoints.one]\npath = "/o"\npaginator = "none"\n'
        '[integrations.x.endpoints.own]\npath = "/c"\n'
        'paginator = { type = "cursor", cursor = "meta.next", items = "rows" }\n'
    )
    integration = spec.integration("x")
    assert isinstance(integration.paginator("list"), LinkHeader)
    assert integration.paginator("one") is None
    own = integration.paginator("own")
    assert isinstance(own, Cursor)
    assert own.cursor == "meta.next"
    assert own.items == "rows"


async def test_json_schema_response_is_enforced(write_spec: WriteSpec) -> None:
    """A response that breaks the endpoint's JSON Schema raises ResponseValidationError
    naming the field, not the value."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x.example"\n[integrations.x.endpoints.w]\n'
        'path = "/w"\n[integrations.x.endpoints.w.response.schema]\ntype = "object"\n'
        'required = ["name"]\nproperties = { temp = { type = "number" } }\n'
    )
    api = MockAPI()
    api.stub("GET", "/w", Reply(json={"temp": CANARY}))
    integration = spec.integration("x")
    async with integration.client(transport=api.transport()) as client:
        with pytest.raises(tether.ResponseValidationError) as caught:
            await integration.call(client, "w")
    message = str(caught.value)
    assert "x.w" in message
    assert "missing required field 'name'" in message
    assert "temp: expected number" in message
    assert CANARY not in message


async def test_pydantic_model_response_by_import_path(write_spec: WriteSpec) -> None:
    """`response = { model = "module:Name" }` validates into that pydantic model."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x.example"\n[integrations.x.endpoints.w]\n'
        f'path = "/w"\nresponse = {{ model = "{__name__}:Weather" }}\n'
    )
    api = MockAPI()
    api.stub("GET", "/w", Reply(json={"name": "Oslo", "temp": 3.5}))
    integration = spec.integration("x")
    async with integration.client(transport=api.transport()) as client:
        weather = await integration.call(client, "w")
    assert weather == Weather(name="Oslo", temp=3.5)


async def test_paginated_items_are_validated_against_the_schema(write_spec: WriteSpec) -> None:
    """For a paginated endpoint the schema describes each item."""
    spec = write_spec(
        '[integrations.x]\nbase_url = "https://x.example"\n[integrations.x.endpoints.l]\n'
        'path = "/l"\n'
        'paginator = { type = "cursor", cursor = "next", items = "data" }\n'
        'response = { schema = { type = "object", required = ["id"] } }\n'
    )
    api = MockAPI()
    api.stub("GET", "/l", Reply(json={"data": [{"id": 1}, {"name": "no id"}], "next": None}))
    integration = spec.integration("x")
    async with integration.client(transport=api.transport()) as client:
        with pytest.raises(tether.ResponseValidationError, match="missing required field 'id'"):
            [item async for item in integration.paginate(client, "l")]


def test_webhook_sources_carry_resolved_secrets(write_spec: WriteSpec) -> None:
    """Each webhook becomes a tether.webhooks.Source with its secret and default path."""
    spec = write_spec('[integrations.gh]\npreset = "github"\n', {"GITHUB_WEBHOOK_SECRET": CANARY})
    (source,) = spec.integration("gh").webhook_sources()
    assert source.name == "gh.events"
    assert source.path == "/webhooks/gh/events"
    assert source.scheme == "github"
    assert CANARY not in repr(source)


def test_webhook_sources_raise_for_a_missing_secret(write_spec: WriteSpec) -> None:
    """Without the webhook secret, building the sources names the variable."""
    spec = write_spec('[integrations.gh]\npreset = "github"\n')
    with pytest.raises(tether.spec.SpecError, match="GITHUB_WEBHOOK_SECRET"):
        spec.integration("gh").webhook_sources()
