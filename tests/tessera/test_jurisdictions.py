"""`tessera.jurisdictions`: ISO 3166-1 alpha-2 codes, upper case only."""

import pytest

from tessera.jurisdictions import check_country_code, is_country_code


@pytest.mark.parametrize("code", ["CN", "DE", "FR", "HK", "SG", "US"])
def test_assigned_codes_in_upper_case_are_jurisdictions(code: str) -> None:
    assert is_country_code(code)
    assert check_country_code(code) == code


@pytest.mark.parametrize("code", ["EU", "UK", "XX", "CHN", "C", "", "\uff23\uff2e"])
def test_groupings_unassigned_and_other_forms_are_not(code: str) -> None:
    assert not is_country_code(code)
    with pytest.raises(ValueError, match="ISO 3166-1 alpha-2"):
        check_country_code(code)


def test_lower_case_is_refused_with_the_upper_case_hint() -> None:
    with pytest.raises(ValueError, match=r"write CN"):
        check_country_code("cn")
