"""Loading tether.toml: validation messages with file, line and key; presets merged underneath."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
import tether.spec
from tether.spec._locate import locate

from .conftest import WriteSpec


def _error(write_spec: WriteSpec, text: str) -> tether.spec.SpecError:
    with pytest.raises(tether.spec.SpecError) as caught:
        write_spec(text)
    return caught.value


def test_spec_error_is_a_config_error() -> None:
    """SpecError belongs to the ConfigError branch of the error tree."""
    assert issubclass(tether.spec.SpecError, tether.ConfigError)


def test_a_valid_spec_lists_its_integrations_in_file_order(write_spec: WriteSpec) -> None:
    """Integrations come back in the order the file defines them."""
    spec = write_spec(
        """
        [integrations.zeta]
        base_url = "https://zeta.example"
        [integrations.alpha]
        base_url = "https://alpha.example"
        """.replace("        ", "")
    )
    assert spec.names == ("zeta", "alpha")


def test_unknown_key_names_file_line_and_key(write_spec: WriteSpec, tmp_path: Path) -> None:
    """A misspelt key is reported at its own line with its full dotted path."""
    error = _error(
        write_spec,
        '[integrations.weather]\nbase_url = "https://x.example"\n\n'
        "[integrations.weather.retry]\nattempts = 3\nbase_dealy = 1\n",
    )
    (problem,) = error.problems
    assert problem.origin is not None
    assert problem.origin.line == 6
    assert problem.key == "integrations.weather.retry.base_dealy"
    assert str(error) == (
        f"{tmp_path / 'tether.toml'}:6: integrations.weather.retry.base_dealy: "
        "unknown key (misspelt?)"
    )


def test_wrong_type_inside_an_inline_table_names_its_line(write_spec: WriteSpec) -> None:
    """A bad value inside an inline table is located on the table's line."""
    error = _error(
        write_spec,
        '[integrations.w]\nbase_url = "https://x.example"\n\ntimeout = { total = -1 }\n',
    )
    (problem,) = error.problems
    assert problem.origin is not None
    assert problem.origin.line == 4
    assert problem.key == "integrations.w.timeout.total"
    assert "greater than 0" in problem.message


def test_union_alternatives_do_not_add_noise(write_spec: WriteSpec) -> None:
    """`retry = { ... bogus ... }` reports the bad key, not "should be a valid boolean"."""
    error = _error(
        write_spec,
        '[integrations.w]\nbase_url = "https://x"\nretry = { attempts = 2, bogus = 1 }\n',
    )
    assert [p.key for p in error.problems] == ["integrations.w.retry.bogus"]


def test_every_problem_is_reported_at_once(write_spec: WriteSpec) -> None:
    """Several mistakes give one SpecError listing each with its line."""
    error = _error(
        write_spec,
        '[integrations.a]\nbase_url = "https://x"\nbreaker = { failure_rate = 7 }\n'
        '[integrations.b]\nbase_url = "https://y"\nbulkhead = { max_concurrent = 0 }\n',
    )
    assert sorted(p.origin.line for p in error.problems if p.origin) == [3, 6]
    assert "2 problems" in str(error)


def test_invalid_toml_says_where(write_spec: WriteSpec) -> None:
    """A TOML syntax error keeps tomllib's line and column and names the file."""
    error = _error(write_spec, "[integrations.a]\nbase_url = \n")
    assert "line 2" in str(error)
    assert "tether.toml" in str(error)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    """A path that does not exist raises SpecError, not FileNotFoundError."""
    with pytest.raises(tether.spec.SpecError, match="no such file"):
        tether.spec.load(tmp_path / "absent.toml")


def test_unknown_preset_is_reported_at_its_line(write_spec: WriteSpec) -> None:
    """`preset = "nope"` names the line and the presets that exist."""
    error = _error(write_spec, '\n[integrations.x]\npreset = "nope"\n')
    (problem,) = error.problems
    assert problem.origin is not None
    assert problem.origin.line == 3
    assert "github" in problem.message


def test_preset_values_sit_under_the_file_and_the_file_wins(write_spec: WriteSpec) -> None:
    """Keys the file sets override the preset's; the rest come from the preset, each with
    its own origin."""
    spec = write_spec(
        '[integrations.gh]\npreset = "github"\nbase_url = "https://ghe.example/api/v3"\n',
        {"GITHUB_TOKEN": "t"},
    )
    integration = spec.integration("gh")
    assert integration.base_url == "https://ghe.example/api/v3"
    settings = {s.key: s for s in integration.settings()}
    assert settings["integrations.gh.base_url"].origin.where.endswith("tether.toml:3")
    graphql = settings["integrations.gh.graphql_path"].origin
    assert graphql.kind == "preset"
    assert graphql.detail == "github"
    assert graphql.where.startswith("presets/github.toml:")


def test_an_auth_table_of_another_type_replaces_the_presets(write_spec: WriteSpec) -> None:
    """Switching the auth type does not mix the preset's fields into the new scheme."""
    spec = write_spec(
        '[integrations.gh]\npreset = "github"\n[integrations.gh.auth]\ntype = "basic"\n'
        'username = "me"\npassword = "${GH_PASSWORD}"\n',
        {"GH_PASSWORD": "pw"},
    )
    integration = spec.integration("gh")
    assert integration.problems == ()
    assert integration.spec.auth is not None
    assert integration.spec.auth.type == "basic"


def test_a_same_type_auth_table_merges_field_by_field(write_spec: WriteSpec) -> None:
    """Overriding one field of the preset's auth keeps its other fields."""
    spec = write_spec(
        '[integrations.z]\npreset = "zoho"\nregion = "eu"\n[integrations.z.auth.token_url]\n'
        'eu = "http://127.0.0.1:9/oauth/v2/token"\n',
        {"ZOHO_CLIENT_ID": "id", "ZOHO_CLIENT_SECRET": "s"},
    )
    auth = spec.integration("z").spec.auth
    assert auth is not None
    assert auth.type == "oauth2"
    assert isinstance(auth.token_url, dict)
    assert auth.token_url["eu"] == "http://127.0.0.1:9/oauth/v2/token"
    assert auth.token_url["us"] == "https://accounts.zoho.com/oauth/v2/token"
    assert auth.template == "Zoho-oauthtoken {token}"


def test_region_must_be_one_of_the_regions(write_spec: WriteSpec) -> None:
    """A region that is not in `regions` is rejected at load time."""
    error = _error(
        write_spec, '[integrations.x]\nregion = "mars"\nregions = { us = "https://us.example" }\n'
    )
    assert "mars" in str(error)


def test_per_region_auth_urls_must_match_the_regions(write_spec: WriteSpec) -> None:
    """A token URL keyed by a region the integration does not have is an error."""
    error = _error(
        write_spec,
        '[integrations.x]\nregions = { us = "https://us.example" }\nregion = "us"\n'
        '[integrations.x.auth]\ntype = "oauth2"\ngrant = "client_credentials"\nclient_id = "c"\n'
        'client_secret = "${S}"\ntoken_url = { eu = "https://eu.example/token" }\n',
    )
    assert "eu" in str(error)


def test_oauth2_grants_name_what_they_need(write_spec: WriteSpec) -> None:
    """An authorization code grant without authorize_url is refused with a reason."""
    error = _error(
        write_spec,
        '[integrations.x]\nbase_url = "https://x"\n[integrations.x.auth]\ntype = "oauth2"\n'
        'grant = "authorization_code"\ntoken_url = "https://x/token"\nclient_id = "c"\n',
    )
    assert "needs authorize_url" in str(error)


def test_response_schema_with_unsupported_keywords_is_refused(write_spec: WriteSpec) -> None:
    """A JSON Schema keyword that would not be enforced is an error, not silently ignored."""
    error = _error(
        write_spec,
        '[integrations.x]\nbase_url = "https://x"\n[integrations.x.endpoints.e]\npath = "/e"\n'
        'response = { schema = { type = "object", dependentRequired = { a = ["b"] } } }\n',
    )
    assert "dependentRequired" in str(error)


def test_load_without_a_file_offers_the_presets() -> None:
    """`load(None)` is a spec with no integrations of its own but every preset by name."""
    spec = tether.spec.load(None, environ={"STRIPE_API_KEY": "sk_test_x"})
    assert spec.names == ()
    assert "stripe" in spec
    assert spec.integration("stripe").base_url == "https://api.stripe.com"


def test_unknown_integration_names_the_known_ones(write_spec: WriteSpec) -> None:
    """Asking for an integration that exists nowhere lists the integrations and presets."""
    spec = write_spec('[integrations.mine]\nbase_url = "https://x"\n')
    with pytest.raises(tether.ConfigError, match=r"mine.*presets: airnow"):
        spec.integration("theirs")


def test_locator_follows_toml_structure() -> None:
    """Keys in inline tables, arrays, dotted keys, arrays of tables and after multi-line
    strings get their own lines."""
    text = (
        "a = 1\n"  # 1
        "[t]\n"  # 2
        'q = { x = 1, "y.z" = { w = "}" } }\n'  # 3
        "arr = [\n"  # 4
        "  1,\n"  # 5
        "  { k = 2 },\n"  # 6
        "]\n"  # 7
        'm = """\n'  # 8
        "[not.a.table]\n"  # 9
        '"""\n'  # 10
        "d.e.f = 3\n"  # 11
        "[[list]]\n"  # 12
        "n = 1\n"  # 13
        "[[list]]\n"  # 14
        "n = 2\n"  # 15
    )
    lines = locate(text)
    assert lines[("a",)] == 1
    assert lines[("t", "q", "y.z", "w")] == 3
    assert lines[("t", "arr", 1, "k")] == 6
    assert ("not", "a", "table") not in lines
    assert lines[("t", "d", "e", "f")] == 11
    assert lines[("list", 1, "n")] == 15
