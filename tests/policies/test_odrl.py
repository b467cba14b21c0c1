"""ODRL offers from patterns and back (connector/odrl.py), valid DSP 2025-1 in a catalog."""

import sys
from pathlib import Path

import pytest

from policies.odrl import (
    USAGE_POLICY,
    OdrlPolicy,
    UnsupportedOdrl,
    offer_from_patterns,
    offer_from_policy,
    patterns_from_offer,
    policy_from_offer,
    rego_from_offer,
)
from policies.patterns import PATTERNS, PatternUse
from tessera.policy import Decision, EmbeddedRegoEngine, Obligation, PolicyModule

SHARED = Path(__file__).resolve().parents[3] / "shared" / "dsp"
CUSTOM = {
    "delete_after": {"delete_after_seconds": None, "delete_by": "2027-01-01T00:00:00Z"},
    "notify": {"notify_url": "https://p.example/hook"},
    "modify_in_transit": {"masked_paths": [], "replacements": [], "drop_rows": []},
    "cross_border": {"allowed_jurisdictions": []},
}


def validate(offer: dict) -> list:
    if not SHARED.is_dir():
        pytest.skip("../shared/dsp is not beside the checkout")
    sys.path.insert(0, str(SHARED))
    from validate import validate_message  # type: ignore[import-not-found]

    catalog = {
        "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
        "@id": "urn:catalog",
        "@type": "Catalog",
        "participantId": "did:web:provider",
        "dataset": [
            {
                "@id": "urn:dataset",
                "@type": "Dataset",
                "hasPolicy": [offer],
                "distribution": [{"@type": "Distribution", "format": "HttpData-PULL", "accessService": "urn:service"}],
            }
        ],
        "service": [{"@id": "urn:service", "@type": "DataService", "endpointURL": "https://p.example/dsp"}],
    }
    return validate_message(catalog)


def uses_for(name: str) -> list[PatternUse]:
    return [PatternUse.of(name), *([PatternUse.of(name, **CUSTOM[name])] if name in CUSTOM else [])]


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_pattern_round_trips_through_a_valid_offer(name: str) -> None:
    for use in uses_for(name):
        offer = offer_from_patterns("urn:offer:1", [use], policy_ref=("p", "sha256:ab"))
        assert validate(offer) == []
        assert offer[USAGE_POLICY] == {"@id": "p", "hash": "sha256:ab"}
        assert patterns_from_offer(offer) == [(use.name, use.params)]


def test_no_right_operand_is_a_bare_number() -> None:
    offer = offer_from_patterns("o", [PatternUse.of(n) for n in sorted(PATTERNS)])

    def operands(value: object) -> list:
        if isinstance(value, dict):
            found = [value["rightOperand"]] if "rightOperand" in value else []
            return found + [x for v in value.values() for x in operands(v)]
        if isinstance(value, list):
            return [x for v in value for x in operands(v)]
        return []

    assert all(not isinstance(o, (int, float)) for o in operands(offer))
    assert validate(offer) == []


def test_an_offer_of_every_pattern_round_trips() -> None:
    uses = [PatternUse.of(n) for n in sorted(PATTERNS)]
    assert set(policy_from_offer(offer_from_patterns("o", uses)).permissions[0]) == set(uses)


def test_constraints_use_the_odrl_vocabulary() -> None:
    offer = offer_from_patterns(
        "o", [PatternUse.of("purpose", allowed_purposes=["research"]), PatternUse.of("max_uses", max_uses=3)]
    )
    assert offer["permission"] == [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]},
                {
                    "leftOperand": "count",
                    "operator": "lteq",
                    "rightOperand": {"@value": "3", "@type": "http://www.w3.org/2001/XMLSchema#integer"},
                },
            ],
        }
    ]


async def test_alternatives_and_prohibitions_become_an_enforceable_module() -> None:
    policy = OdrlPolicy(
        permissions=[
            [PatternUse.of("purpose", allowed_purposes=["research"]), PatternUse.of("log_usage")],
            [PatternUse.of("purpose", allowed_purposes=["statistics"]), PatternUse.of("masked_fields")],
        ],
        prohibitions=[[PatternUse.of("regions", allowed_regions=["US-CA"])]],
    )
    offer = offer_from_policy("o", policy)
    assert validate(offer) == []
    assert policy_from_offer(offer) == policy
    module = PolicyModule("inbound", rego_from_offer(offer, "tessera.usage.inbound"))
    engine = EmbeddedRegoEngine()
    assert await engine.decide(module, {"purpose": "research"}) == Decision(
        True, obligations=[Obligation("log", {"event": "use"})]
    )
    assert await engine.decide(module, {"purpose": "statistics"}) == Decision(True, mask=("email", "phone"))
    denied = await engine.decide(module, {"purpose": "research", "caller": {"region": "US-CA"}})
    assert denied.reasons == ('prohibited: regions {"allowed_regions":["US-CA"]}',)
    both = await engine.decide(module, {"purpose": "x"})
    assert [r.split(":")[0] for r in both.reasons] == ["permission 1", "permission 2"]


def test_policy_level_obligations_apply_to_every_permission() -> None:
    offer = {
        "@id": "o",
        "@type": "Offer",
        "permission": [{"action": "use"}],
        "obligation": [
            {
                "action": "https://w3id.org/tessera/v1/log",
                "constraint": [{"leftOperand": "event", "operator": "eq", "rightOperand": "use"}],
            }
        ],
    }
    assert patterns_from_offer(offer) == [("log_usage", {"log_event": "use"})]


@pytest.mark.parametrize(
    ("offer", "named"),
    [
        ({"permission": [{"action": "distribute"}]}, "distribute"),
        ({"permission": [{"action": "use", "constraint": [{"or": []}]}]}, "logical"),
        (
            {
                "permission": [
                    {
                        "action": "use",
                        "constraint": [{"leftOperand": "language", "operator": "eq", "rightOperand": "de"}],
                    }
                ]
            },
            "language eq",
        ),
        ({"permission": [{"action": "use", "duty": [{"action": "watermark"}]}]}, "watermark"),
        ({"prohibition": [{"action": "use"}]}, "without a permission"),
        (
            {
                "permission": [
                    {
                        "action": "use",
                        "constraint": [{"leftOperand": "count", "operator": "lteq", "rightOperand": "many"}],
                    }
                ]
            },
            "integer",
        ),
        (
            {
                "permission": [
                    {
                        "action": "use",
                        "constraint": [{"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": []}],
                    }
                ]
            },
            "must not be empty",
        ),
    ],
)
def test_unsupported_constructs_are_named(offer: dict, named: str) -> None:
    with pytest.raises(UnsupportedOdrl, match=named):
        policy_from_offer({"@id": "o", "@type": "Offer", **offer})
