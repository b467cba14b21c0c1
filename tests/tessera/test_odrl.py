"""ODRL policies as typed values (tessera/odrl.py): every form a conforming peer sends reads the same."""

from typing import Any

import pytest

from tessera.errors import InvalidMessage
from tessera.odrl import TESSERA, Constraint, LogicalConstraint, Permission, Policy, parse_policy

COMPACT: dict[str, Any] = {
    "@id": "urn:offer:1",
    "@type": "Offer",
    "target": "urn:dataset:1",
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]},
                {"leftOperand": "tessera:role", "operator": "eq", "rightOperand": "analyst"},
            ],
        }
    ],
}
PREFIXED: dict[str, Any] = {
    "@id": "urn:offer:1",
    "@type": "odrl:Offer",
    "odrl:target": {"@id": "urn:dataset:1"},
    "odrl:permission": {
        "odrl:action": {"@id": "odrl:use"},
        "odrl:constraint": [
            {
                "odrl:leftOperand": {"@id": "odrl:purpose"},
                "odrl:operator": {"@id": "odrl:isAnyOf"},
                "odrl:rightOperand": {"@list": [{"@value": "research"}]},
            },
            {
                "odrl:leftOperand": {"@id": TESSERA + "role"},
                "odrl:operator": {"@id": "odrl:eq"},
                "odrl:rightOperand": {"@value": "analyst"},
            },
        ],
    },
}
ODRL = "http://www.w3.org/ns/odrl/2/"
EXPANDED: dict[str, Any] = {
    "@id": "urn:offer:1",
    "@type": [ODRL + "Offer"],
    ODRL + "target": [{"@id": "urn:dataset:1"}],
    ODRL + "permission": [
        {
            ODRL + "action": [{"@id": ODRL + "use"}],
            ODRL + "constraint": [
                {
                    ODRL + "leftOperand": [{"@id": ODRL + "purpose"}],
                    ODRL + "operator": [{"@id": ODRL + "isAnyOf"}],
                    ODRL + "rightOperand": [{"@value": "research"}],
                },
                {
                    ODRL + "leftOperand": [{"@id": TESSERA + "role"}],
                    ODRL + "operator": [{"@id": ODRL + "eq"}],
                    ODRL + "rightOperand": "analyst",
                },
            ],
        }
    ],
}


@pytest.mark.parametrize("document", [COMPACT, PREFIXED, EXPANDED], ids=["compact", "prefixed", "expanded"])
def test_every_form_reads_the_same(document: dict[str, Any]) -> None:
    policy = parse_policy(document)
    assert policy.kind == "Offer" and policy.id == "urn:offer:1" and policy.target == "urn:dataset:1"
    assert policy.permissions == (
        Permission(
            "use",
            (Constraint("purpose", "isAnyOf", ("research",)), Constraint(TESSERA + "role", "eq", "analyst")),
        ),
    )


def test_writes_2025_1_compact_and_reads_it_back() -> None:
    policy = parse_policy(PREFIXED)
    written = policy.to_json()
    assert written["permission"][0]["constraint"][0] == {
        "leftOperand": "purpose",
        "operator": "isAnyOf",
        "rightOperand": ["research"],
    }
    assert parse_policy(written) == policy


def test_logical_constraints_typed_literals_and_extensions() -> None:
    policy = parse_policy(
        {
            "@type": "Agreement",
            "permission": {
                "action": "use",
                "constraint": {
                    "odrl:xone": {
                        "@list": [
                            {
                                "leftOperand": "count",
                                "operator": "lteq",
                                "rightOperand": {"@value": "5", "@type": "xsd:integer"},
                            },
                            {"leftOperand": "spatial", "operator": "eq", "rightOperand": {"@id": "urn:region:CN"}},
                        ]
                    }
                },
            },
            TESSERA + "usagePolicy": {"@id": "p", "hash": "sha256:x"},
        }
    )
    (logical,) = policy.permissions[0].constraints
    assert isinstance(logical, LogicalConstraint) and logical.operator == "xone"
    assert logical.constraints[0] == Constraint("count", "lteq", "5", "http://www.w3.org/2001/XMLSchema#integer")
    assert logical.constraints[1] == Constraint("spatial", "eq", "urn:region:CN")
    assert policy.extensions == {TESSERA + "usagePolicy": {"@id": "p", "hash": "sha256:x"}}
    assert parse_policy(policy.to_json()) == policy


def test_prohibitions_obligations_and_duties() -> None:
    policy = parse_policy(
        {
            "permission": [{"action": "use", "duty": [{"action": "delete"}]}],
            "prohibition": [{"action": "distribute"}],
            "obligation": [{"action": "inform"}],
        }
    )
    assert policy == Policy(
        permissions=(Permission("use", duties=(parse_policy({"obligation": [{"action": "delete"}]}).obligations)),),
        prohibitions=policy.prohibitions,
        obligations=policy.obligations,
    )
    assert policy.prohibitions[0].action == "distribute" and policy.obligations[0].action == "inform"


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ([], "policy: expected a JSON object"),
        ({"@type": "Offer"}, "at least one permission"),
        ({"@type": "Dataset", "permission": [{"action": "use"}]}, "policy.@type"),
        ({"permission": [{"constraint": []}]}, "policy.permission[0]: a rule needs an action"),
        ({"permission": [{"action": ["use", "read"]}]}, "policy.permission[0].action"),
        ({"permission": [{"action": "use", "constraint": [{"leftOperand": "x"}]}]}, "permission[0].constraint[0]"),
        ({"permission": [{"action": "use", "constraint": [{"and": []}]}]}, "constraint[0].and"),
        ({"permission": [{"action": 7}]}, "policy.permission[0].action"),
        (
            {
                "permission": [
                    {"action": "use", "constraint": [{"leftOperand": "a", "operator": "eq", "rightOperand": [[1]]}]}
                ]
            },
            "rightOperand[0]",
        ),
    ],
)
def test_what_cannot_be_read_is_a_protocol_error_naming_the_element(document: Any, where: str) -> None:
    with pytest.raises(InvalidMessage) as raised:
        parse_policy(document)
    assert where in raised.value.detail
