"""The pure OAuth2 token state: merging responses, refresh timing, skew, backoff, challenges."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from tether._core._oauth import (
    Lifecycle,
    TokenAction,
    TokenErrorKind,
    TokenResponseError,
    TokenSet,
    classify_token_error,
    code_challenge_s256,
    decide,
    find_challenge,
    merge_token_response,
    parse_www_authenticate,
    refresh_backoff,
    skew_from_date,
)

LIFECYCLE = Lifecycle()


def merge(body: object, previous: TokenSet | None = None, **kw: object) -> TokenSet:
    options: dict[str, object] = {
        "previous": previous,
        "received_at": 1000.0,
        "skew": 0.0,
        "lifecycle": LIFECYCLE,
        "rand": 0.5,
    }
    options.update(kw)
    return merge_token_response(body, **options)  # type: ignore[arg-type]


def jwt_with_exp(exp: int) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'exp': exp})}.sig"


class TestMerge:
    def test_basic_response(self) -> None:
        """A full response becomes a token set with absolute expiry on our clock and version 1."""
        token = merge(
            {"access_token": "a1", "token_type": "bearer", "expires_in": 3600, "scope": "x y"}
        )
        assert token.access_token.get_secret_value() == "a1"
        assert token.token_type == "Bearer"
        assert token.expires_at == 4600.0
        assert token.scope == "x y"
        assert token.version == 1

    def test_omitted_refresh_token_keeps_the_old_one(self) -> None:
        """RFC 6749 §6: a refresh response without refresh_token leaves the old one valid."""
        first = merge({"access_token": "a1", "refresh_token": "r1", "expires_in": 60})
        second = merge({"access_token": "a2", "expires_in": 60}, previous=first)
        assert second.refresh_token is not None
        assert second.refresh_token.get_secret_value() == "r1"
        assert second.version == 2

    def test_rotated_refresh_token_replaces_the_old_one(self) -> None:
        """A new refresh_token in the response replaces the previous one."""
        first = merge({"access_token": "a1", "refresh_token": "r1"})
        second = merge({"access_token": "a2", "refresh_token": "r2"}, previous=first)
        assert second.refresh_token == SecretStr("r2")

    def test_scope_defaults_to_requested_then_previous(self) -> None:
        """RFC 6749 §5.1: an omitted scope is the scope requested, else the one held."""
        assert merge({"access_token": "a"}, requested_scope="api").scope == "api"
        held = merge({"access_token": "a", "scope": "read"})
        assert merge({"access_token": "b"}, previous=held).scope == "read"

    @pytest.mark.parametrize("expires_in", ["3600", 3600.0, " 3600 "])
    def test_expires_in_as_string_or_float(self, expires_in: object) -> None:
        """A numeric string or a float expires_in is accepted (vendors send both)."""
        assert merge({"access_token": "a", "expires_in": expires_in}).expires_at == 4600.0

    def test_absolute_expires_at_is_corrected_by_skew(self) -> None:
        """An absolute expires_at is on the server's clock: the measured skew is removed."""
        token = merge({"access_token": "a", "expires_at": 5000}, skew=100.0)
        assert token.expires_at == 4900.0

    def test_jwt_exp_is_the_fallback(self) -> None:
        """Without expires_in, a JWT access token's exp claim (server clock) sets the expiry."""
        token = merge({"access_token": jwt_with_exp(2000)}, skew=-50.0)
        assert token.expires_at == 2050.0

    def test_default_lifetime_last(self) -> None:
        """With no hint at all, the lifecycle's default lifetime is assumed."""
        token = merge({"access_token": "opaque"}, lifecycle=Lifecycle(default_lifetime=120))
        assert token.expires_at == 1120.0

    @pytest.mark.parametrize(
        "body", [[], {"token_type": "bearer"}, {"access_token": ""}, {"access_token": 5}]
    )
    def test_unusable_response(self, body: object) -> None:
        """A 200 without a usable access_token is an error, not a token set."""
        with pytest.raises(TokenResponseError):
            merge(body)

    def test_dpop_token_type_normalised(self) -> None:
        """token_type is case-insensitive (RFC 6749 §5.1); dpop becomes DPoP."""
        assert merge({"access_token": "a", "token_type": "dpop"}).token_type == "DPoP"

    def test_repr_and_json_round_trip(self) -> None:
        """The repr shows no secret; to_json/from_json round-trips every field."""
        token = merge(
            {"access_token": "s3cret-a", "refresh_token": "s3cret-r", "id_token": "s3cret-i",
             "expires_in": 60, "user_id": 42}
        )  # fmt: skip
        assert "s3cret" not in repr(token)
        assert TokenSet.from_json(json.loads(json.dumps(token.to_json()))) == token
        assert token.extra == {"user_id": 42}


class TestLifecycle:
    def test_short_tokens_do_not_refresh_on_every_call(self) -> None:
        """A 60 s token refreshes 6-12 s before expiry, not at once as a 60 s leeway would."""
        lifecycle = Lifecycle()
        low = lifecycle.refresh_at(0.0, 60.0, 0.0)
        high = lifecycle.refresh_at(0.0, 60.0, 1.0)
        assert low == pytest.approx(54.0)
        assert high == pytest.approx(48.0)

    def test_long_tokens_refresh_a_minute_early(self) -> None:
        """A one-hour token refreshes 60 s before expiry (the leeway cap)."""
        assert Lifecycle().refresh_at(0.0, 3600.0, 0.5) == 3540.0

    def test_decide_windows(self) -> None:
        """Fresh tokens are used, soft-expired ones used while refreshing, hard-expired not."""
        token = merge({"access_token": "a", "expires_in": 3600})  # issued at 1000
        assert token.refresh_at is not None
        assert decide(token, now=1000, lifecycle=LIFECYCLE) is TokenAction.USE
        assert decide(token, now=token.refresh_at, lifecycle=LIFECYCLE) is (
            TokenAction.USE_AND_REFRESH
        )
        assert decide(token, now=4600 - 5, lifecycle=LIFECYCLE) is TokenAction.REFRESH
        assert decide(None, now=0, lifecycle=LIFECYCLE) is TokenAction.REFRESH

    def test_backoff_holds_the_soft_window(self) -> None:
        """After a failed early refresh, the token is just used until the backoff ends."""
        token = merge({"access_token": "a", "expires_in": 3600})
        now = 4560.0
        retry_after = refresh_backoff(1, now=now, token=token, lifecycle=LIFECYCLE, rand=0.0)
        assert retry_after == now + 15.0
        assert decide(token, now=now + 1, lifecycle=LIFECYCLE, retry_after=retry_after) is (
            TokenAction.USE
        )
        assert decide(token, now=retry_after, lifecycle=LIFECYCLE, retry_after=retry_after) is (
            TokenAction.USE_AND_REFRESH
        )

    def test_backoff_grows_but_stops_at_hard_expiry(self) -> None:
        """Backoff doubles per failure and never runs past the token's hard expiry."""
        token = merge({"access_token": "a", "expires_in": 3600})
        first = refresh_backoff(1, now=1000, token=token, lifecycle=LIFECYCLE, rand=1.0)
        third = refresh_backoff(3, now=1000, token=token, lifecycle=LIFECYCLE, rand=1.0)
        assert (first - 1000, third - 1000) == (30.0, 120.0)
        late = refresh_backoff(9, now=4590, token=token, lifecycle=LIFECYCLE, rand=1.0)
        assert late == 4595.0


class TestSkew:
    def test_skew_from_date(self) -> None:
        """The Date header gives how far ahead the server's clock is."""
        # 2026-01-01T00:00:00Z is 1767225600.
        date = "Thu, 01 Jan 2026 00:05:00 GMT"
        assert skew_from_date(date, received_at=1_767_225_600.0) == 300.0
        assert skew_from_date(date, received_at=1_767_225_899.0) == 0.0
        assert skew_from_date("garbage", received_at=0.0) == 0.0
        assert skew_from_date(None, received_at=0.0) == 0.0


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "body", "kind"),
        [
            (400, {"error": "invalid_grant"}, TokenErrorKind.INVALID_GRANT),
            (401, {"error": "invalid_client"}, TokenErrorKind.INVALID_CLIENT),
            (401, None, TokenErrorKind.INVALID_CLIENT),
            (400, {"error": "temporarily_unavailable"}, TokenErrorKind.RETRYABLE),
            (503, None, TokenErrorKind.RETRYABLE),
            (429, None, TokenErrorKind.RETRYABLE),
            (400, {"error": "authorization_pending"}, TokenErrorKind.AUTHORIZATION_PENDING),
            (400, {"error": "slow_down"}, TokenErrorKind.SLOW_DOWN),
            (400, {"error": "expired_token"}, TokenErrorKind.DEVICE_DENIED),
            (400, {"error": "use_dpop_nonce"}, TokenErrorKind.USE_DPOP_NONCE),
            (400, {"error": "invalid_scope"}, TokenErrorKind.FATAL),
        ],
    )
    def test_classification(self, status: int, body: object, kind: TokenErrorKind) -> None:
        """Each RFC 6749 §5.2 / RFC 8628 / RFC 9449 error code maps to one reaction."""
        assert classify_token_error(status, body)[0] is kind


class TestChallenges:
    def test_bearer_with_params(self) -> None:
        """RFC 6750 §3: scheme, quoted and token params, escaped quotes."""
        [challenge] = parse_www_authenticate(
            'Bearer realm="example", error="invalid_token", '
            'error_description="The access token \\"expired\\""'
        )
        assert challenge.scheme == "Bearer"
        assert challenge.error == "invalid_token"
        assert challenge.params["error_description"] == 'The access token "expired"'

    def test_several_challenges(self) -> None:
        """Several challenges in one value are told apart by their schemes."""
        challenges = parse_www_authenticate(
            'Basic realm="a", DPoP algs="ES256 RS256", error="use_dpop_nonce", Bearer'
        )
        assert [c.scheme for c in challenges] == ["Basic", "DPoP", "Bearer"]
        dpop = find_challenge(challenges, "dpop")
        assert dpop is not None
        assert dpop.error == "use_dpop_nonce"
        assert dpop.params["algs"] == "ES256 RS256"

    def test_token68_and_garbage(self) -> None:
        """A token68 challenge parses; garbage yields nothing rather than raising."""
        assert parse_www_authenticate("Negotiate abc123==")[0].scheme == "Negotiate"
        assert parse_www_authenticate('"unterminated') == []
        assert parse_www_authenticate("") == []


@given(st.text(max_size=200))
def test_www_authenticate_parser_never_raises(value: str) -> None:
    """Any header value parses to a list of challenges or nothing; it never raises."""
    for challenge in parse_www_authenticate(value):
        assert challenge.scheme


@given(
    st.dictionaries(
        st.sampled_from(["access_token", "expires_in", "expires_at", "refresh_token", "scope",
                         "token_type", "other"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    )
)  # fmt: skip
def test_merge_accepts_or_refuses_cleanly(body: dict[str, object]) -> None:
    """Any JSON object either merges into a token set or raises TokenResponseError."""
    try:
        token = merge(body)
    except TokenResponseError:
        return
    assert token.access_token.get_secret_value()
    assert token.expires_at is None or token.expires_at == token.expires_at  # not NaN


def test_pkce_s256_rfc7636_appendix_b() -> None:
    """The S256 challenge matches the worked example of RFC 7636 Appendix B."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge_s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
