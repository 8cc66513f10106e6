"""Each preset against a loopback server that answers in the provider's documented format.

The fixtures follow the providers' API references (response envelopes, pagination fields and
headers, auth schemes); tests point the preset's URLs at the loopback server.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import tether
import tether.spec
from tether import webhooks
from tether._graphql import GraphQLError, graphql
from tether.testing import ANY, LinkHeaderPages, MockAPI, MockRequest, Reply, no_wait

CANARY = "canary-5d1e-api-key"


def load(tmp_path: Path, text: str, environ: Mapping[str, str]) -> tether.spec.Spec:
    path = tmp_path / "tether.toml"
    path.write_text(text, encoding="utf-8")
    return tether.spec.load(path, environ=dict(environ))


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    """The presets' rate limits would space these requests by seconds; the waits are
    skipped (they are counted, not timed, in the CLI tests)."""
    with no_wait():
        yield


@pytest.fixture
async def api() -> AsyncIterator[tuple[MockAPI, str]]:
    mock = MockAPI(seed=7)
    async with mock.serve() as server:
        yield mock, server.url


async def items(integration: tether.spec.Integration, endpoint: str, **args: Any) -> list[Any]:
    async with integration.client() as client:
        return [item async for item in integration.paginate(client, endpoint, **args)]


# -- OpenWeatherMap ---------------------------------------------------------------------------


async def test_openweathermap_sends_appid_and_units(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """The key goes in `appid`, `units=metric` is the default, and check() says ok."""
    mock, url = api
    mock.stub(
        "GET",
        "/data/2.5/weather",
        Reply(
            json={
                "coord": {"lon": -0.13, "lat": 51.51},
                "name": "London",
                "cod": 200,
                "main": {"temp": 11.2, "humidity": 81},
                "weather": [{"id": 500}],
            }
        ),
        query={"appid": CANARY, "units": "metric", "q": "London"},
    )
    spec = load(
        tmp_path,
        f'[integrations.w]\npreset = "openweathermap"\nbase_url = "{url}"\n',
        {"OPENWEATHERMAP_API_KEY": CANARY},
    )
    weather = spec.integration("w")
    async with weather.client() as client:
        body = await weather.call(client, "current", q="London")
        result = await weather.check(client)
    assert body["main"]["temp"] == 11.2
    assert result.status == "ok"


async def test_openweathermap_invalid_key_is_invalid_auth(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """OpenWeatherMap's 401 `{"cod": 401, "message": "Invalid API key..."}` means
    invalid_auth, and the message does not show the key."""
    mock, url = api
    mock.stub(
        "GET",
        "/data/2.5/weather",
        Reply(401, json={"cod": 401, "message": f"Invalid API key {CANARY}. Please see the FAQ"}),
    )
    spec = load(
        tmp_path,
        f'[integrations.w]\npreset = "openweathermap"\nbase_url = "{url}"\n',
        {"OPENWEATHERMAP_API_KEY": CANARY},
    )
    weather = spec.integration("w")
    async with weather.client() as client:
        result = await weather.check(client)
    assert result.status == "invalid_auth"
    assert CANARY not in result.message


# -- WattTime ---------------------------------------------------------------------------------


async def test_watttime_logs_in_with_basic_auth_then_sends_the_token(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """GET /login with Basic credentials answers {"token"}; later calls carry it as Bearer."""
    mock, url = api
    basic = base64.b64encode(b"ada:pw-" + CANARY.encode()).decode()
    mock.stub(
        "GET",
        "/login",
        Reply(json={"token": "wt-token-1"}),
        headers={"Authorization": f"Basic {basic}"},
    )
    mock.stub(
        "GET",
        "/v3/signal-index",
        Reply(
            json={
                "data": [{"point_time": "2024-05-01T12:00:00+00:00", "value": 62.0}],
                "meta": {"region": "CAISO_NORTH", "signal_type": "co2_moer", "units": "percentile"},
            }
        ),
        headers={"Authorization": "Bearer wt-token-1"},
        query={"region": "CAISO_NORTH", "signal_type": "co2_moer"},
    )
    spec = load(
        tmp_path,
        f'[integrations.wt]\npreset = "watttime"\nbase_url = "{url}"\n'
        f'auth = {{ type = "login_exchange", login_url = "{url}/login" }}\n',
        {"WATTTIME_USERNAME": "ada", "WATTTIME_PASSWORD": "pw-" + CANARY},
    )
    watttime = spec.integration("wt")
    async with watttime.client() as client:
        body = await watttime.call(client, "index", region="CAISO_NORTH")
    assert body["data"][0]["value"] == 62.0
    assert [r.path for r in mock.requests] == ["/login", "/v3/signal-index"]


async def test_watttime_refused_login_is_invalid_auth(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """A 401 from /login makes check() say invalid_auth."""
    mock, url = api
    mock.stub("GET", "/login", Reply(401, body="Unauthorized"))
    spec = load(
        tmp_path,
        f'[integrations.wt]\npreset = "watttime"\nbase_url = "{url}"\n'
        f'auth = {{ type = "login_exchange", login_url = "{url}/login" }}\n',
        {"WATTTIME_USERNAME": "ada", "WATTTIME_PASSWORD": CANARY},
    )
    watttime = spec.integration("wt")
    async with watttime.client() as client:
        result = await watttime.check(client)
    assert result.status == "invalid_auth"
    assert CANARY not in result.message


# -- AirNow -----------------------------------------------------------------------------------


async def test_airnow_sends_api_key_and_reads_the_observation_list(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """The key goes in `API_KEY`, with format=application/json; the answer is a list."""
    mock, url = api
    observation = {
        "DateObserved": "2024-05-01 ",
        "HourObserved": 13,
        "LocalTimeZone": "EST",
        "ReportingArea": "Metropolitan Washington",
        "StateCode": "DC",
        "Latitude": 38.919,
        "Longitude": -77.013,
        "ParameterName": "O3",
        "AQI": 38,
        "Category": {"Number": 1, "Name": "Good"},
    }
    mock.stub(
        "GET",
        "/aq/observation/zipCode/current/",
        Reply(json=[observation]),
        query={
            "API_KEY": CANARY,
            "format": "application/json",
            "zipCode": "20002",
            "distance": "25",
        },
    )
    spec = load(
        tmp_path,
        f'[integrations.air]\npreset = "airnow"\nbase_url = "{url}"\n',
        {"AIRNOW_API_KEY": CANARY},
    )
    airnow = spec.integration("air")
    async with airnow.client() as client:
        body = await airnow.call(client, "current_by_zip", zipCode="20002")
    assert body[0]["AQI"] == 38


# -- GitHub -----------------------------------------------------------------------------------


async def test_github_follows_link_headers_with_bearer_and_api_version(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """Issues are walked through `Link: rel="next"`, each request carrying the token and the
    API version header."""
    mock, url = api
    mock.collection(
        "/repos/octo/hello/issues",
        items=[{"id": i, "number": i, "state": "open", "title": f"#{i}"} for i in range(1, 251)],
        pagination=LinkHeaderPages(page_size=100),
    )
    spec = load(
        tmp_path,
        f'[integrations.gh]\npreset = "github"\nbase_url = "{url}"\n',
        {"GITHUB_TOKEN": CANARY},
    )
    found = await items(spec.integration("gh"), "issues", owner="octo", repo="hello")
    assert [i["number"] for i in found] == list(range(1, 251))
    assert len(mock.requests) == 3
    for request in mock.requests:
        assert request.headers["Authorization"] == f"Bearer {CANARY}"
        assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
        assert request.query["per_page"] == "100"


async def test_github_graphql_data_and_errors(api: tuple[MockAPI, str], tmp_path: Path) -> None:
    """POST /graphql returns data; an `errors` array raises GraphQLError with the messages,
    the token redacted out of them."""
    mock, url = api
    mock.stub(
        "POST",
        "/graphql",
        Reply(json={"data": {"viewer": {"login": "octocat"}}}),
        json_partial={"query": "{ viewer { login } }"},
    )
    mock.stub(
        "POST",
        "/graphql",
        Reply(
            json={"data": None, "errors": [{"message": f"bad token {CANARY}", "path": ["viewer"]}]}
        ),
        json_partial={"query": "{ broken }"},
    )
    spec = load(
        tmp_path,
        f'[integrations.gh]\npreset = "github"\nbase_url = "{url}"\n',
        {"GITHUB_TOKEN": CANARY},
    )
    github = spec.integration("gh")
    async with github.client() as client:
        assert await graphql(client, "{ viewer { login } }") == {"viewer": {"login": "octocat"}}
        with pytest.raises(GraphQLError) as caught:
            await graphql(client, "{ broken }")
    assert caught.value.errors[0]["path"] == ["viewer"]
    assert CANARY not in str(caught.value)
    assert CANARY not in json.dumps(caught.value.errors)


def test_github_webhook_source_verifies_github_signatures(tmp_path: Path) -> None:
    """The preset's webhook source verifies an X-Hub-Signature-256 made with its secret."""
    spec = load(
        tmp_path, '[integrations.gh]\npreset = "github"\n', {"GITHUB_WEBHOOK_SECRET": "whs"}
    )
    (source,) = spec.integration("gh").webhook_sources()
    body = b'{"action":"opened"}'
    headers = webhooks.sign(source.scheme, secret="whs", body=body, msg_id="d-1")
    verified = webhooks.verify(source.scheme, secret=source.secrets, headers=headers, body=body)
    assert verified.msg_id == "d-1"


# -- Stripe -----------------------------------------------------------------------------------


def _stripe_list(ids: list[str], *, has_more: bool) -> Reply:
    data = [{"id": i, "object": "customer", "email": f"{i}@example.com"} for i in ids]
    return Reply(
        json={"object": "list", "url": "/v1/customers", "has_more": has_more, "data": data}
    )


async def test_stripe_pages_with_starting_after_until_has_more_is_false(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """The last item's id goes back as `starting_after`; `has_more: false` ends the walk."""
    mock, url = api
    mock.stub(
        "GET",
        "/v1/customers",
        _stripe_list(["cus_1", "cus_2"], has_more=True),
        query={"limit": "100"},
    )
    mock.stub(
        "GET",
        "/v1/customers",
        _stripe_list(["cus_3"], has_more=False),
        query={"limit": "100", "starting_after": "cus_2"},
    )
    spec = load(
        tmp_path,
        f'[integrations.s]\npreset = "stripe"\nbase_url = "{url}"\n',
        {"STRIPE_API_KEY": CANARY},
    )
    found = await items(spec.integration("s"), "customers")
    assert [c["id"] for c in found] == ["cus_1", "cus_2", "cus_3"]


async def test_stripe_post_is_form_encoded_with_an_idempotency_key(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """create_customer sends a form body and an Idempotency-Key header."""
    mock, url = api
    stub = mock.stub(
        "POST",
        "/v1/customers",
        Reply(json={"id": "cus_9", "object": "customer", "email": "a@example.com"}),
        headers={"Idempotency-Key": ANY, "Content-Type": "application/x-www-form-urlencoded"},
        body="email=a%40example.com",
    )
    spec = load(
        tmp_path,
        f'[integrations.s]\npreset = "stripe"\nbase_url = "{url}"\n',
        {"STRIPE_API_KEY": CANARY},
    )
    stripe = spec.integration("s")
    async with stripe.client() as client:
        body = await stripe.call(client, "create_customer", email="a@example.com")
    assert body["id"] == "cus_9"
    assert stub.call_count == 1


def test_stripe_webhook_source_verifies_stripe_signatures(tmp_path: Path) -> None:
    """The preset's webhook source verifies a Stripe-Signature made with whsec_ secret."""
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()
    spec = load(
        tmp_path, '[integrations.s]\npreset = "stripe"\n', {"STRIPE_WEBHOOK_SECRET": secret}
    )
    (source,) = spec.integration("s").webhook_sources()
    body = b'{"id":"evt_1","type":"customer.created"}'
    headers = webhooks.sign("stripe", secret=secret, body=body)
    webhooks.verify(source.scheme, secret=source.secrets, headers=headers, body=body)


# -- Slack ------------------------------------------------------------------------------------


async def test_slack_follows_response_metadata_next_cursor(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """conversations.list pages on response_metadata.next_cursor; an empty cursor ends it."""
    mock, url = api
    first = {
        "ok": True,
        "channels": [{"id": "C1", "name": "general"}],
        "response_metadata": {"next_cursor": "dGVhbTpDMDYxRkE1UEI="},
    }
    last = {
        "ok": True,
        "channels": [{"id": "C2", "name": "random"}],
        "response_metadata": {"next_cursor": ""},
    }
    mock.stub(
        "GET",
        "/conversations.list",
        Reply(json=last),
        query={"cursor": "dGVhbTpDMDYxRkE1UEI=", "limit": "200"},
    )
    mock.stub("GET", "/conversations.list", Reply(json=first), query={"limit": "200"}, priority=-1)
    spec = load(
        tmp_path,
        f'[integrations.sl]\npreset = "slack"\nbase_url = "{url}"\n',
        {"SLACK_BOT_TOKEN": CANARY},
    )
    found = await items(spec.integration("sl"), "conversations")
    assert [c["id"] for c in found] == ["C1", "C2"]


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ({"ok": True, "url": "https://acme.slack.com/", "team": "Acme", "user": "bot"}, "ok"),
        ({"ok": False, "error": "invalid_auth"}, "invalid_auth"),
        ({"ok": False, "error": "ratelimited"}, "unknown"),
    ],
)
async def test_slack_check_reads_the_ok_envelope(
    api: tuple[MockAPI, str], tmp_path: Path, answer: dict[str, Any], status: str
) -> None:
    """Slack answers 200 even for a bad token; check() reads `ok` and `error`."""
    mock, url = api
    mock.stub("POST", "/auth.test", Reply(json=answer))
    spec = load(
        tmp_path,
        f'[integrations.sl]\npreset = "slack"\nbase_url = "{url}"\n',
        {"SLACK_BOT_TOKEN": CANARY},
    )
    slack = spec.integration("sl")
    async with slack.client() as client:
        assert (await slack.check(client)).status == status


# -- SendGrid ---------------------------------------------------------------------------------


async def test_sendgrid_follows_metadata_next_in_the_eu_region(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """Region `eu` selects the EU base URL; lists follow `_metadata.next`."""
    mock, url = api
    mock.stub(
        "GET",
        "/v3/marketing/lists",
        Reply(
            json={
                "result": [{"id": "l2", "name": "Second", "contact_count": 0}],
                "_metadata": {"self": f"{url}/v3/marketing/lists?page_token=p2", "count": 2},
            }
        ),
        query={"page_token": "p2"},
    )
    mock.stub(
        "GET",
        "/v3/marketing/lists",
        Reply(
            json={
                "result": [{"id": "l1", "name": "First", "contact_count": 3}],
                "_metadata": {
                    "self": f"{url}/v3/marketing/lists?page_size=100",
                    "next": f"{url}/v3/marketing/lists?page_size=100&page_token=p2",
                    "count": 2,
                },
            }
        ),
        query={"page_size": "100"},
        priority=-1,
    )
    spec = load(
        tmp_path,
        f'[integrations.sg]\npreset = "sendgrid"\nregion = "eu"\nregions = {{ eu = "{url}" }}\n',
        {"SENDGRID_API_KEY": CANARY},
    )
    sendgrid = spec.integration("sg")
    assert sendgrid.base_url == url
    found = await items(sendgrid, "lists")
    assert [x["id"] for x in found] == ["l1", "l2"]


# -- Salesforce -------------------------------------------------------------------------------


async def test_salesforce_refreshes_then_follows_next_records_url(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """The refresh token buys an access token; a SOQL query follows nextRecordsUrl."""
    mock, url = api
    oauth = mock.oauth2(clients={"sf-client": "sf-secret"})
    refresh = oauth.issue_refresh_token("sf-client")
    oauth.protect("/services")
    base = "/services/data/v62.0"
    mock.stub(
        "GET",
        f"{base}/query",
        Reply(
            json={
                "totalSize": 3,
                "done": False,
                "nextRecordsUrl": f"{base}/query/01gD0000002HU6KIAW-2000",
                "records": [
                    {"attributes": {"type": "Account"}, "Id": "001A", "Name": "Acme"},
                    {"attributes": {"type": "Account"}, "Id": "001B", "Name": "Globex"},
                ],
            }
        ),
        query={"q": "SELECT Id, Name FROM Account"},
    )
    mock.stub(
        "GET",
        f"{base}/query/01gD0000002HU6KIAW-2000",
        Reply(
            json={
                "totalSize": 3,
                "done": True,
                "records": [{"attributes": {"type": "Account"}, "Id": "001C", "Name": "Initech"}],
            }
        ),
    )
    spec = load(
        tmp_path,
        f'[integrations.sf]\npreset = "salesforce"\n[integrations.sf.auth]\n'
        f'token_url = "{url}/oauth/token"\ntoken_store = "memory"\n',
        {
            "SALESFORCE_INSTANCE_URL": url,
            "SALESFORCE_CLIENT_ID": "sf-client",
            "SALESFORCE_CLIENT_SECRET": "sf-secret",
            "SALESFORCE_REFRESH_TOKEN": refresh,
        },
    )
    salesforce = spec.integration("sf")
    found = await items(salesforce, "query", q="SELECT Id, Name FROM Account")
    assert [r["Id"] for r in found] == ["001A", "001B", "001C"]
    token_requests = [r for r in mock.requests if r.path == "/oauth/token"]
    assert len(token_requests) == 1
    assert b"grant_type=refresh_token" in token_requests[0].body
    assert b"client_secret=sf-secret" in token_requests[0].body  # client_secret_post


# -- Okta -------------------------------------------------------------------------------------


async def test_okta_sends_ssws_and_follows_link_after_cursors(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """`Authorization: SSWS <token>`; pages follow `Link: <...after=...>; rel="next"`."""
    mock, url = api
    users = f"{url}/api/v1/users"
    mock.stub(
        "GET",
        "/api/v1/users",
        Reply(
            json=[{"id": "00u3", "status": "ACTIVE"}],
            headers={"Link": f'<{users}?after=00u2&limit=200>; rel="self"'},
        ),
        query={"after": "00u2"},
        headers={"Authorization": f"SSWS {CANARY}"},
    )
    mock.stub(
        "GET",
        "/api/v1/users",
        Reply(
            json=[{"id": "00u1", "status": "ACTIVE"}, {"id": "00u2", "status": "ACTIVE"}],
            headers=[
                ("Link", f'<{users}?limit=200>; rel="self"'),
                ("Link", f'<{users}?after=00u2&limit=200>; rel="next"'),
            ],
        ),
        query={"limit": "200"},
        headers={"Authorization": f"SSWS {CANARY}"},
        priority=-1,
    )
    spec = load(
        tmp_path,
        f'[integrations.okta]\npreset = "okta"\nbase_url = "{url}/api/v1"\n',
        {"OKTA_API_TOKEN": CANARY},
    )
    found = await items(spec.integration("okta"), "users")
    assert [u["id"] for u in found] == ["00u1", "00u2", "00u3"]


def test_okta_base_url_comes_from_the_domain_variable(tmp_path: Path) -> None:
    """OKTA_DOMAIN fills the base URL."""
    spec = load(
        tmp_path,
        '[integrations.okta]\npreset = "okta"\n',
        {"OKTA_DOMAIN": "acme.okta.com", "OKTA_API_TOKEN": "t"},
    )
    assert spec.integration("okta").base_url == "https://acme.okta.com/api/v1"


# -- Zoho and Site24x7 ------------------------------------------------------------------------


def _zoho_guard(mock: MockAPI, oauth: Any, answer: dict[str, Any]) -> Any:
    def handler(request: MockRequest, params: Mapping[str, str]) -> Reply:
        del params
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Zoho-oauthtoken" or token not in oauth.active_access_tokens:
            return Reply(
                401,
                json={"code": "INVALID_TOKEN", "status": "error", "message": "invalid oauth token"},
            )
        return Reply(json=answer)

    return handler


async def test_zoho_eu_region_uses_eu_accounts_and_api_with_zoho_oauthtoken(
    tmp_path: Path,
) -> None:
    """With region eu, the token comes from the EU accounts server and the API call goes to
    the EU API with `Authorization: Zoho-oauthtoken ...`; the US servers see nothing."""
    us, eu = MockAPI(seed=1), MockAPI(seed=2)
    eu_oauth = eu.oauth2(token_path="/oauth/v2/token", clients={"zc": "zs"})
    us.oauth2(token_path="/oauth/v2/token", clients={"zc": "zs"})
    refresh = eu_oauth.issue_refresh_token("zc")
    org = {"org": [{"id": "1", "company_name": "Acme", "country_code": "DE"}]}
    eu.stub("GET", "/crm/v7/org", handler=_zoho_guard(eu, eu_oauth, org))
    async with us.serve() as us_server, eu.serve() as eu_server:
        spec = load(
            tmp_path,
            f'[integrations.z]\npreset = "zoho"\nregion = "eu"\n'
            f'regions = {{ us = "{us_server.url}/crm/v7", eu = "{eu_server.url}/crm/v7" }}\n'
            f'[integrations.z.auth]\ntoken_store = "memory"\n'
            f'token_url = {{ us = "{us_server.url}/oauth/v2/token", '
            f'eu = "{eu_server.url}/oauth/v2/token" }}\n',
            {"ZOHO_CLIENT_ID": "zc", "ZOHO_CLIENT_SECRET": "zs", "ZOHO_REFRESH_TOKEN": refresh},
        )
        zoho = spec.integration("z")
        async with zoho.client() as client:
            body = await zoho.call(client, "org")
            result = await zoho.check(client)
    assert body["org"][0]["company_name"] == "Acme"
    assert result.status == "ok"
    assert us.requests == []
    assert [r.path for r in eu.requests][:2] == ["/oauth/v2/token", "/crm/v7/org"]


async def test_zoho_records_follow_next_page_token(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """Records pages follow info.next_page_token while info.more_records is true."""
    mock, url = api
    oauth = mock.oauth2(token_path="/oauth/v2/token", clients={"zc": "zs"})
    refresh = oauth.issue_refresh_token("zc")
    page1 = {
        "data": [{"id": "1"}, {"id": "2"}],
        "info": {
            "per_page": 2,
            "count": 2,
            "page": 1,
            "more_records": True,
            "next_page_token": "tok2",
        },
    }
    page2 = {
        "data": [{"id": "3"}],
        "info": {"per_page": 2, "count": 1, "page": 2, "more_records": False},
    }
    mock.stub("GET", "/crm/v7/Leads", Reply(json=page2), query={"page_token": "tok2"})
    mock.stub("GET", "/crm/v7/Leads", Reply(json=page1), query={"per_page": "200"}, priority=-1)
    spec = load(
        tmp_path,
        f'[integrations.z]\npreset = "zoho"\nregions = {{ us = "{url}/crm/v7" }}\n'
        f'[integrations.z.auth]\ntoken_store = "memory"\n'
        f'token_url = {{ us = "{url}/oauth/v2/token" }}\n',
        {"ZOHO_CLIENT_ID": "zc", "ZOHO_CLIENT_SECRET": "zs", "ZOHO_REFRESH_TOKEN": refresh},
    )
    found = await items(spec.integration("z"), "records", module="Leads", fields="Last_Name")
    assert [r["id"] for r in found] == ["1", "2", "3"]


async def test_site24x7_eu_sends_zoho_oauthtoken_and_api_version(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """Site24x7 answers `{"code": 0, "message": "success", "data": ...}` to requests with the
    Zoho-oauthtoken header and `Accept: application/json; version=2.0`."""
    mock, url = api
    oauth = mock.oauth2(token_path="/oauth/v2/token", clients={"sc": "ss"})
    refresh = oauth.issue_refresh_token("sc")
    answer = {
        "code": 0,
        "message": "success",
        "data": {"monitors": [{"monitor_id": "1", "status": 1}]},
    }
    mock.stub(
        "GET",
        "/api/current_status",
        handler=_zoho_guard(mock, oauth, answer),
    )
    spec = load(
        tmp_path,
        f'[integrations.s]\npreset = "site24x7"\nregion = "eu"\nregions = {{ eu = "{url}/api" }}\n'
        f'[integrations.s.auth]\ntoken_store = "memory"\n'
        f'token_url = {{ eu = "{url}/oauth/v2/token" }}\n',
        {
            "SITE24X7_CLIENT_ID": "sc",
            "SITE24X7_CLIENT_SECRET": "ss",
            "SITE24X7_REFRESH_TOKEN": refresh,
        },
    )
    site = spec.integration("s")
    async with site.client() as client:
        body = await site.call(client, "current_status")
    assert body["data"]["monitors"][0]["status"] == 1
    api_request = next(r for r in mock.requests if r.path == "/api/current_status")
    assert api_request.headers["Accept"] == "application/json; version=2.0"


# -- Google Calendar --------------------------------------------------------------------------


async def test_google_calendar_follows_next_page_token(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """Events page on nextPageToken / pageToken with maxResults=250; the access token comes
    from refreshing a stored grant."""
    mock, url = api
    oauth = mock.oauth2(clients={"gc": "gs"})
    refresh = oauth.issue_refresh_token("gc")
    oauth.protect("/calendar")
    base = "/calendar/v3/calendars/primary/events"
    mock.stub(
        "GET",
        base,
        Reply(json={"kind": "calendar#events", "items": [{"id": "e3"}]}),
        query={"pageToken": "CiAKGj"},
    )
    mock.stub(
        "GET",
        base,
        Reply(
            json={
                "kind": "calendar#events",
                "nextPageToken": "CiAKGj",
                "items": [{"id": "e1"}, {"id": "e2"}],
            }
        ),
        query={"maxResults": "250", "singleEvents": "true"},
        priority=-1,
    )
    spec = load(
        tmp_path,
        f'[integrations.cal]\npreset = "google_calendar"\nbase_url = "{url}/calendar/v3"\n'
        f'[integrations.cal.auth]\ntoken_url = "{url}/oauth/token"\ntoken_store = "memory"\n'
        'refresh_token = "${GOOGLE_REFRESH_TOKEN}"\n',
        {"GOOGLE_CLIENT_ID": "gc", "GOOGLE_CLIENT_SECRET": "gs", "GOOGLE_REFRESH_TOKEN": refresh},
    )
    found = await items(spec.integration("cal"), "events", calendar_id="primary")
    assert [e["id"] for e in found] == ["e1", "e2", "e3"]


# -- check() outcomes that do not depend on the provider --------------------------------------


async def test_check_reports_cannot_connect_for_a_closed_port(
    tmp_path: Path, closed_port: int
) -> None:
    """Nothing listening is cannot_connect, with a hint about the network."""
    spec = load(
        tmp_path,
        f'[integrations.gh]\npreset = "github"\nbase_url = "http://127.0.0.1:{closed_port}"\n',
        {"GITHUB_TOKEN": CANARY},
    )
    github = spec.integration("gh")
    async with github.client(retry=None) as client:
        result = await github.check(client)
    assert result.status == "cannot_connect"
    assert result.hint is not None


async def test_check_reports_cannot_connect_for_server_errors(
    api: tuple[MockAPI, str], tmp_path: Path
) -> None:
    """A 503 from the check endpoint is cannot_connect, not invalid_auth."""
    mock, url = api
    mock.stub("GET", "/user", Reply(503, json={"message": "unavailable"}))
    spec = load(
        tmp_path,
        f'[integrations.gh]\npreset = "github"\nbase_url = "{url}"\n',
        {"GITHUB_TOKEN": CANARY},
    )
    github = spec.integration("gh")
    async with github.client(retry=None) as client:
        assert (await github.check(client)).status == "cannot_connect"
