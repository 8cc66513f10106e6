"""Server quota headers: IETF RateLimit fields, the draft-07 trio and X-RateLimit-*."""

from __future__ import annotations

import math

import pytest
from multidict import CIMultiDict

from tether._core._quota import Quota, parse_quota, parse_quotas

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def quotas(**headers: str) -> tuple[Quota, ...]:
    return parse_quotas(
        CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}), now_wall=NOW
    )


def quota(**headers: str) -> Quota | None:
    return parse_quota(
        CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}), now_wall=NOW
    )


# -- IETF RateLimit / RateLimit-Policy ------------------------------------------------------


@pytest.mark.parametrize("name", ['"default"', "default"])
def test_ietf_fields_are_joined_by_policy_name(name: str) -> None:
    """RateLimit and RateLimit-Policy items with the same name (String or Token) form one quota."""
    assert quota(
        RateLimit_Policy=f"{name};q=100;w=60",
        RateLimit=f"{name};r=50;t=30",
    ) == Quota(
        limit=100,
        remaining=50,
        reset_in=30.0,
        window=60.0,
        policy="default",
        source="ratelimit",
    )


def test_ietf_several_policies_pick_the_tightest() -> None:
    """With a burst and a daily policy, parse_quota returns the one with the lowest fair rate."""
    headers = {
        "RateLimit_Policy": '"burst";q=100;w=60, "daily";q=1000;w=86400;qu="request"',
        "RateLimit": '"burst";r=50;t=30, "daily";r=10;t=3600',
    }
    assert [q.policy for q in quotas(**headers)] == ["burst", "daily"]
    tightest = quota(**headers)
    assert tightest is not None
    assert tightest.policy == "daily"
    assert tightest.unit == "request"
    assert tightest.fair_rate == pytest.approx(10 / 3600)


def test_ietf_repeated_fields_are_one_list() -> None:
    """A list split over two field lines (RFC 9651 §3.1) is read as one list."""
    headers = CIMultiDict(
        [
            ("RateLimit-Policy", '"a";q=10;w=1'),
            ("RateLimit-Policy", '"b";q=100;w=60'),
            ("RateLimit", '"a";r=0;t=1'),
            ("RateLimit", '"b";r=90;t=50'),
        ]
    )
    found = parse_quotas(headers, now_wall=NOW)
    assert [(q.policy, q.limit, q.remaining) for q in found] == [("a", 10, 0), ("b", 100, 90)]


def test_ietf_policy_alone_gives_the_budget() -> None:
    """A RateLimit-Policy without RateLimit still tells the limit and window."""
    assert quotas(RateLimit_Policy='"default";q=600;w=60') == (
        Quota(limit=600, window=60.0, policy="default", source="ratelimit"),
    )


def test_ietf_current_without_policy() -> None:
    """A RateLimit item without a matching policy still tells what remains."""
    assert quota(RateLimit='"x";r=3;t=7') == Quota(
        remaining=3, reset_in=7.0, policy="x", source="ratelimit"
    )


@pytest.mark.parametrize(
    "value",
    ['"default";r=5;t=', '"unterminated;r=5', '"d";r=5,', "((", '"d";R=5;t=1'],
)
def test_ietf_malformed_fields_are_ignored(value: str) -> None:
    """A RateLimit field that is not a valid structured list is ignored, without raising."""
    assert quotas(RateLimit=value) == ()


# -- draft-07 trio --------------------------------------------------------------------------


def test_draft07_trio() -> None:
    """RateLimit-Limit/Remaining/Reset with an Integer RateLimit-Policy form one quota."""
    assert quota(
        RateLimit_Limit="100",
        RateLimit_Remaining="7",
        RateLimit_Reset="12",
        RateLimit_Policy="100;w=60",
    ) == Quota(limit=100, remaining=7, reset_in=12.0, window=60.0, source="ratelimit-draft07")


def test_early_draft_policy_inside_limit() -> None:
    """Early drafts put the window into RateLimit-Limit itself ("100, 100;w=60")."""
    found = quota(RateLimit_Limit="100, 100;w=60", RateLimit_Remaining="99", RateLimit_Reset="5")
    assert found is not None
    assert (found.limit, found.window) == (100, 60.0)


def test_newest_family_wins() -> None:
    """When a response has both IETF and X- fields, the IETF ones are read."""
    found = quotas(
        RateLimit='"d";r=5;t=10',
        X_RateLimit_Limit="60",
        X_RateLimit_Remaining="59",
        X_RateLimit_Reset="10",
    )
    assert [q.source for q in found] == ["ratelimit"]


# -- X-RateLimit-* --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ("42", 42.0),  # delta seconds: most APIs
        ("0.5", 0.5),
        ("86400", 86400.0),  # a daily window is still a delta
        (str(int(NOW) + 1800), 1800.0),  # epoch seconds: GitHub, Twitter/X
        (f"{NOW + 12.5:.3f}", 12.5),  # epoch with decimals: Discord
        (str(int(NOW * 1000) + 3000), 3.0),  # epoch milliseconds
        (str(int(NOW) - 100), 0.0),  # an epoch already past means now
        ("1s", 1.0),  # Go durations: OpenAI
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("Thu, 01 Jan 2026 00:01:00 GMT", 60.0),
    ],
)
def test_x_ratelimit_reset_forms(reset: str, expected: float) -> None:
    """X-RateLimit-Reset is read as a delta, an epoch, a duration or a date, as appropriate."""
    found = quota(X_RateLimit_Limit="5000", X_RateLimit_Remaining="4999", X_RateLimit_Reset=reset)
    assert found is not None
    assert found.reset_in == pytest.approx(expected)
    assert (found.limit, found.remaining, found.source) == (5000, 4999, "x-ratelimit")


def test_epoch_reset_is_measured_on_the_servers_clock() -> None:
    """With a Date header the epoch reset is measured from the server's now, not the client's."""
    found = quota(
        X_RateLimit_Remaining="1",
        X_RateLimit_Reset=str(int(NOW) + 600),
        Date="Thu, 01 Jan 2026 00:09:00 GMT",
    )
    assert found is not None
    assert found.reset_in == 60.0


def test_reset_after_wins_over_reset() -> None:
    """Discord's X-RateLimit-Reset-After (a precise delta) is preferred to the epoch Reset."""
    found = quota(
        X_RateLimit_Remaining="0",
        X_RateLimit_Reset=str(int(NOW) + 100),
        X_RateLimit_Reset_After="1.25",
    )
    assert found is not None
    assert found.reset_in == 1.25


def test_openai_style_dimensions() -> None:
    """Suffixed headers give one quota per dimension; the tightest is the tokens one here."""
    headers = {
        "x_ratelimit_limit_requests": "60",
        "x_ratelimit_remaining_requests": "59",
        "x_ratelimit_reset_requests": "1s",
        "x_ratelimit_limit_tokens": "150000",
        "x_ratelimit_remaining_tokens": "100",
        "x_ratelimit_reset_tokens": "6m0s",
    }
    assert [(q.policy, q.limit, q.remaining, q.reset_in) for q in quotas(**headers)] == [
        ("requests", 60, 59, 1.0),
        ("tokens", 150000, 100, 360.0),
    ]
    tightest = quota(**headers)
    assert tightest is not None
    assert tightest.policy == "tokens"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"X_RateLimit_Limit": "abc", "X_RateLimit_Remaining": "-3", "X_RateLimit_Reset": "x"},
            Quota(),
        ),
        ({"X_RateLimit_Remaining": "nan", "X_RateLimit_Reset": "inf"}, Quota()),
        ({"X_RateLimit_Remaining": "12.7"}, Quota(remaining=12)),
        ({"X_RateLimit_Reset": "-5"}, Quota()),
        ({"RateLimit_Remaining": "many", "RateLimit_Reset": "soon"}, None),
    ],
)
def test_malformed_values_give_none_fields(headers: dict[str, str], expected: Quota | None) -> None:
    """Malformed numbers become None fields; nothing raises."""
    found = quota(**headers)
    if expected is None:
        assert found is not None
        assert (found.remaining, found.reset_in) == (None, None)
    else:
        assert found == expected


def test_no_quota_headers() -> None:
    """A response without quota headers has no quota."""
    assert quota(Content_Type="application/json") is None
    assert quotas() == ()


def test_exhausted_quota_is_tightest() -> None:
    """A quota with nothing remaining has fair rate 0 and is picked first."""
    found = quota(RateLimit='"a";r=0;t=10, "b";r=5;t=100')
    assert found is not None
    assert found.policy == "a"
    assert found.fair_rate == 0.0


def test_fair_rate_edges() -> None:
    """fair_rate is None when unknown and infinite when the quota resets now."""
    assert Quota(remaining=5).fair_rate is None
    assert Quota(remaining=5, reset_in=0.0).fair_rate == math.inf


def test_plain_mapping_is_accepted() -> None:
    """A plain dict with lower-case names works as well as a multidict."""
    found = parse_quota({"x-ratelimit-remaining": "3", "x-ratelimit-reset": "9"}, now_wall=NOW)
    assert found == Quota(remaining=3, reset_in=9.0)


def test_okta_spelling() -> None:
    """Okta's X-Rate-Limit-* headers (epoch reset) are read like X-RateLimit-*."""
    headers = CIMultiDict(
        {
            "X-Rate-Limit-Limit": "600",
            "X-Rate-Limit-Remaining": "12",
            "X-Rate-Limit-Reset": "1767225660",
        }
    )
    quota = parse_quota(headers, now_wall=1_767_225_600.0)
    assert quota is not None
    assert (quota.limit, quota.remaining, quota.reset_in) == (600, 12, 60.0)
