"""Is a request within an offer (policies/narrowing.py), and an offer narrowed to agreed terms."""

from typing import Any

import pytest

from policies.narrowing import narrow, within
from tessera.odrl import parse_policy
from tessera.terms import Terms


def offer(*constraints: dict[str, Any], duties: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    permission: dict[str, Any] = {"action": "use", "constraint": list(constraints)}
    if duties:
        permission["duty"] = duties
    return {"@type": "Offer", "permission": [permission], **extra}


def c(left: str, operator: str, right: Any) -> dict[str, Any]:
    return {"leftOperand": left, "operator": operator, "rightOperand": right}


PURPOSES = c("purpose", "isAnyOf", ["research", "grid-planning"])
USES = c("count", "lteq", "5")
DAYS = c("elapsedTime", "lteq", "P30D")
MASK = {"action": "anonymize", "constraint": [c("tessera:field", "isAnyOf", ["email"])]}
OFFER = offer(PURPOSES, USES, DAYS, c("spatial", "eq", "CN"), duties=[MASK])


@pytest.mark.parametrize(
    "request_",
    [
        OFFER,
        offer(c("purpose", "eq", "research"), USES, DAYS, c("spatial", "eq", "CN"), duties=[MASK]),
        offer(
            PURPOSES,
            c("count", "lt", "3"),
            c("elapsedTime", "lt", "PT3600S"),
            c("spatial", "isAnyOf", ["CN"]),
            duties=[MASK],
        ),
        offer(PURPOSES, USES, DAYS, c("spatial", "eq", "CN"), c("event", "eq", "x"), duties=[MASK]),
    ],
    ids=["the offer itself", "fewer purposes", "tighter bounds", "an added constraint"],
)
def test_requests_within_the_offer(request_: dict[str, Any]) -> None:
    assert within(parse_policy(request_), parse_policy(OFFER)) == []


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (
            offer(
                c("purpose", "isAnyOf", ["research", "marketing"]), USES, DAYS, c("spatial", "eq", "CN"), duties=[MASK]
            ),
            "purpose",
        ),
        (offer(PURPOSES, c("count", "lteq", "6"), DAYS, c("spatial", "eq", "CN"), duties=[MASK]), "count"),
        (
            offer(PURPOSES, USES, c("elapsedTime", "lteq", "P31D"), c("spatial", "eq", "CN"), duties=[MASK]),
            "elapsedTime",
        ),
        (offer(PURPOSES, USES, DAYS, duties=[MASK]), "spatial"),
        (offer(PURPOSES, USES, DAYS, c("spatial", "eq", "CN")), "anonymize"),
        ({"@type": "Offer", "permission": [{"action": "distribute"}]}, "action distribute"),
    ],
    ids=["a purpose more", "more uses", "longer", "a constraint dropped", "a duty dropped", "another action"],
)
def test_requests_beyond_the_offer_name_what_is_wider(request_: dict[str, Any], named: str) -> None:
    reasons = within(parse_policy(request_), parse_policy(OFFER))
    assert len(reasons) == 1 and named in reasons[0], reasons


def test_a_dropped_prohibition_is_wider() -> None:
    prohibited = {**OFFER, "prohibition": [{"action": "use", "constraint": [c("spatial", "eq", "US")]}]}
    assert within(parse_policy(OFFER), parse_policy(prohibited)) == ["the offer's prohibition of use is missing"]
    assert within(parse_policy(prohibited), parse_policy(prohibited)) == []


def test_narrow_keeps_every_constraint_and_duty_and_replaces_the_negotiated_ones() -> None:
    agreed = narrow(parse_policy(OFFER), Terms(purposes=("research",), uses=1, duration_days=1))
    permission = agreed.to_json()["permission"][0]
    assert permission["duty"] == [
        {"action": "anonymize", "constraint": [c("https://w3id.org/tessera/v1/field", "isAnyOf", ["email"])]}
    ]
    assert permission["constraint"] == [
        c("spatial", "eq", "CN"),
        c("purpose", "isAnyOf", ["research"]),
        c("count", "lteq", "1"),
        c("elapsedTime", "lteq", "P1D"),
    ]
    assert within(agreed, parse_policy(OFFER)) == []
