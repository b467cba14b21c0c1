"""`tessera.registry_ids`: unified social credit codes (GB 32100) and LEIs (ISO 17442) as their standards check them.

Broker admission with these ids is in tests/broker/test_claims.py.
"""

import pytest

from tessera.registry_ids import (
    USCC_CHARACTERS,
    USCC_WEIGHTS,
    InvalidRegistryId,
    check_lei,
    check_registry_id,
    check_uscc,
    mod97,
    organisation_code_check_character,
    uscc_check_character,
)

# Published codes of real organisations: each passes both check characters.
USCCS = [
    "91350100M000100Y43",  # the example of the standard's era, a Fuzhou (350100) enterprise
    "914403001922038216",  # Huawei Technologies Co., Ltd.
    "91330100716105852F",  # Alibaba (China) Co., Ltd.
    "91440300708461136T",  # Shenzhen Tencent Computer Systems Co., Ltd.
    "91110000802100433B",  # Beijing Baidu Netcom Science and Technology Co., Ltd.
    "91100000100003962T",  # Industrial and Commercial Bank of China
]
LEIS = [
    "529900T8BM49AURSDO55",
    "HWUPKR0MPOU8FGXBT394",  # Apple Inc.
    "7LTWFZYICNSX8D621K86",  # Deutsche Bank AG
    "54930053HGCFWVHYZX42",  # Bank of China
    "5493002ERZU2K9PZDL40",  # Industrial and Commercial Bank of China
]


def one_changed(code: str, position: int, alphabet: str) -> str:
    """`code` with the character at `position` (0-based) replaced by the next one of `alphabet`."""
    replacement = alphabet[(alphabet.index(code[position]) + 1) % len(alphabet)]
    return code[:position] + replacement + code[position + 1 :]


@pytest.mark.parametrize("code", USCCS)
def test_published_unified_social_credit_codes_are_valid(code: str) -> None:
    check_uscc(code)
    assert check_registry_id("uscc", code) == code


def test_the_check_characters_follow_the_standard() -> None:
    # 91350100M000100Y4 weighs 1640; 1640 mod 31 = 28; 31 - 28 = 3
    assert sum(USCC_CHARACTERS.index(c) * w for c, w in zip("91350100M000100Y4", USCC_WEIGHTS, strict=True)) == 1640
    assert uscc_check_character("91350100M000100Y4") == "3"
    # GB 11714 over M000100Y (M = 22, Y = 34): 22*3 + 1*5 + 34*2 = 139; 139 mod 11 = 7; 11 - 7 = 4
    assert organisation_code_check_character("M000100Y") == "4"


def test_a_weighted_sum_divisible_by_31_gives_check_character_0() -> None:
    first17 = "91110000100000002"
    assert sum(USCC_CHARACTERS.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True)) % 31 == 0
    assert uscc_check_character(first17) == "0"


def test_organisation_check_characters_10_and_11_are_written_x_and_0() -> None:
    by_value = {organisation_code_check_character(f"{n:08d}") for n in range(2_000)}
    assert {"X", "0"} <= by_value
    assert by_value <= set("0123456789X")


@pytest.mark.parametrize("position", range(18))
def test_any_one_changed_character_of_a_uscc_is_caught(position: int) -> None:
    for code in USCCS:
        with pytest.raises(InvalidRegistryId):
            check_uscc(one_changed(code, position, USCC_CHARACTERS))


@pytest.mark.parametrize(
    ("code", "names"),
    [
        ("91350100M000100Y4", "18 characters"),
        ("91350100M000100Y433", "18 characters"),
        ("91350100M000100I43", "'I' not allowed"),
        ("91350100m000100Y43", "'m' not allowed"),
        ("B1350100M000100Y43", "registration authority 'B' (position 1)"),
        ("94350100M000100Y43", "category '4' (position 2) is not one of 1, 2, 3 for authority 9"),
        ("9135A100M000100Y43", "administrative division '35A100' (positions 3-8)"),
        ("91350100M000100Y53", "organisation code 'M000100Y5' (positions 9-17): check character '5', expected '4'"),
        ("91350100M000100Y44", "check character (position 18) is '4', expected '3'"),
    ],
)
def test_a_bad_uscc_is_refused_naming_the_rule(code: str, names: str) -> None:
    with pytest.raises(InvalidRegistryId) as refused:
        check_uscc(code)
    assert names in str(refused.value)


def test_uscc_categories_of_other_authorities() -> None:
    # A social organisation (5 1), a public institution (1 2) and "other" (Y 1), made valid by computing
    # both check characters: the structure rules admit them.
    for prefix in ("51", "12", "Y1"):
        first17 = f"{prefix}110000MJ000100" + organisation_code_check_character("MJ000100")
        check_uscc(first17 + uscc_check_character(first17))


@pytest.mark.parametrize("code", LEIS)
def test_published_leis_are_valid(code: str) -> None:
    check_lei(code)
    assert mod97(code) == 1


@pytest.mark.parametrize("position", range(20))
def test_any_one_changed_character_of_an_lei_is_caught(position: int) -> None:
    alphabet = "0123456789" if position >= 18 else "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for code in LEIS:
        with pytest.raises(InvalidRegistryId):
            check_lei(one_changed(code, position, alphabet))


@pytest.mark.parametrize(
    ("code", "names"),
    [
        ("529900T8BM49AURSDO5", "20 characters"),
        ("529900t8bm49aursdo55", "only digits and capital letters"),
        ("529900T8BM49AURSDOAB", "two check digits"),
        ("529900T8BM49AURSDO56", "MOD 97-10"),
    ],
)
def test_a_bad_lei_is_refused_naming_the_rule(code: str, names: str) -> None:
    with pytest.raises(InvalidRegistryId) as refused:
        check_lei(code)
    assert names in str(refused.value)


def test_other_registry_ids_are_short_non_empty_strings() -> None:
    assert check_registry_id("other", "HRB 12345 Amtsgericht Berlin") == "HRB 12345 Amtsgericht Berlin"
    for bad in ("", "   ", "x" * 65):
        with pytest.raises(InvalidRegistryId, match="1-64 characters"):
            check_registry_id("other", bad)
    with pytest.raises(InvalidRegistryId, match="not one of uscc, lei, other"):
        check_registry_id("duns", "123456789")
