"""The label values and the one ordering of derived data (`tessera.labels`); end to end in
tests/connector/test_labels.py."""

import pytest

from tessera.labels import Labels, jurisdiction, rank, stricter, strictest


def test_levels_order_core_over_important_over_general() -> None:
    assert stricter("general", "important") == "important"
    assert stricter("core", "general", "important") == "core"
    assert stricter("general") == "general"
    assert stricter("unknown", "general") == "core"  # an unknown level ranks as core: fail closed
    assert [rank(level) for level in ("general", "important", "core")] == [0, 1, 2]


def test_derived_data_takes_the_strictest_label_of_its_inputs() -> None:
    health = Labels(classification="general", category="health", home_jurisdiction="CN")
    personal = Labels(classification="important", category="health", personal_information=True, home_jurisdiction="CN")
    assert strictest(health, personal) == Labels(
        classification="important", category="health", personal_information=True, home_jurisdiction="CN"
    )
    assert strictest(health) == health


def test_inputs_of_different_categories_or_homes_have_no_one_label() -> None:
    with pytest.raises(ValueError, match="different categories"):
        strictest(Labels(category="health"), Labels(category="energy"))
    with pytest.raises(ValueError, match="different home jurisdictions"):
        strictest(Labels(home_jurisdiction="CN"), Labels(home_jurisdiction="DE"))


def test_a_label_lower_than_its_source_is_named() -> None:
    source = Labels(classification="important", category="health", personal_information=True, home_jurisdiction="CN")
    assert (
        Labels(classification="core", category="health", personal_information=True, home_jurisdiction="CN").lower_than(
            source
        )
        == []
    )
    assert Labels(classification="general", category="energy", home_jurisdiction="CN").lower_than(source) == [
        "classification 'general' is lower than 'important'",
        "personal_information is false, the source holds personal information",
        "category 'energy' is not the source's 'health'",
    ]


@pytest.mark.parametrize("code", ["CN", "DE", "US", "HK"])
def test_home_jurisdictions_are_iso_3166_alpha_2(code: str) -> None:
    assert jurisdiction(code) == code


@pytest.mark.parametrize("code", ["XX", "cn", "CHN", "EU", "", "C"])
def test_anything_else_is_no_jurisdiction(code: str) -> None:
    with pytest.raises(ValueError, match="ISO 3166-1 alpha-2"):
        jurisdiction(code)


def test_labels_read_back_as_written_and_refuse_nonsense() -> None:
    labels = Labels(classification="core", category="C27", personal_information=True, home_jurisdiction="DE")
    assert Labels.from_dict(labels.to_dict()) == labels
    for bad in ({"classification": "secret"}, {"personal_information": "yes"}, {"home_jurisdiction": "Germany"}):
        with pytest.raises(ValueError):
            Labels.from_dict(bad)
