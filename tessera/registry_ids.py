"""Organisation registry ids, checked as their standards define them: pure functions, no I/O.

| type | standard | shape |
|---|---|---|
| `uscc` | GB 32100-2015 unified social credit code (统一社会信用代码) | 18 characters, check character last |
| `lei` | ISO 17442 legal entity identifier | 20 characters, ISO 7064 MOD 97-10 check digits last |
| `other` | any other registry | a non-empty string of at most 64 characters |

```python
check_registry_id("uscc", "91350100M000100Y43")  # returns the code, or raises InvalidRegistryId
```
"""

from typing import Final

REGISTRY_TYPES: Final = ("uscc", "lei", "other")
MAX_OTHER_LENGTH = 64

# GB 32100-2015: 0-9 and the capital letters without I, O, S, V and Z; a character's value is its index.
USCC_CHARACTERS: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# Position i (1-17) weighs 3^(i-1) mod 31.
USCC_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# Position 1, the registration authority (登记管理部门), and the institution categories (机构类别) it
# assigns in position 2, as the standard's table lists them.
USCC_CATEGORIES: Final = {
    "1": "1239",  # 机构编制: organs, public institutions, mass organisations, other
    "2": "19",  # 外交: resident foreign news agencies, other
    "3": "123459",  # 司法行政: law firms, notaries, legal services, forensic appraisal, arbitration, other
    "4": "19",  # 文化: foreign cultural centres, other
    "5": "1239",  # 民政: social organisations, private non-enterprise units, foundations, other
    "6": "129",  # 旅游: foreign tourism offices, Hong Kong / Macao / Taiwan tourism offices, other
    "7": "129",  # 宗教: places of worship, religious schools, other
    "8": "19",  # 工会: grassroots trade unions, other
    "9": "123",  # 工商: enterprises, individual businesses, farmers' cooperatives
    "A": "19",  # 中央军委改革和编制办公室: military public institutions, other
    "N": "1239",  # 农业: group, village and township collective economic organisations, other
    "Y": "1",  # 其他: not divided further
}
# GB 11714-1997 organisation code (positions 9-17 of a USCC): 8 characters and a check character. Its
# characters count 0-9 then A-Z = 10-35, with every letter of the alphabet.
ORGANISATION_CODE_CHARACTERS: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ORGANISATION_CODE_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)

LEI_CHARACTERS: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class InvalidRegistryId(ValueError):
    """A registry id that breaks its standard; the message says which rule."""


def check_registry_id(registry_type: str, value: str) -> str:
    """`value` if it is a valid id of `registry_type` (one of `REGISTRY_TYPES`); else InvalidRegistryId."""
    if registry_type == "uscc":
        check_uscc(value)
    elif registry_type == "lei":
        check_lei(value)
    elif registry_type == "other":
        if not value.strip() or len(value) > MAX_OTHER_LENGTH:
            raise InvalidRegistryId(f"an id of type other must be 1-{MAX_OTHER_LENGTH} characters")
    else:
        raise InvalidRegistryId(f"registry type {registry_type!r} is not one of {', '.join(REGISTRY_TYPES)}")
    return value


# -- GB 32100-2015: unified social credit code -----------------------------------------------------------


def check_uscc(code: str) -> None:
    """Raise InvalidRegistryId unless `code` is a well-formed unified social credit code."""
    if len(code) != 18:
        raise InvalidRegistryId(f"a unified social credit code has 18 characters, not {len(code)}")
    if wrong := sorted(set(code) - set(USCC_CHARACTERS)):
        raise InvalidRegistryId(
            f"{''.join(wrong)!r} not allowed in a unified social credit code (0-9 and A-Y without I, O, S, V)"
        )
    authority, category, division = code[0], code[1], code[2:8]
    if authority not in USCC_CATEGORIES:
        raise InvalidRegistryId(
            f"registration authority {authority!r} (position 1) is not one of {', '.join(USCC_CATEGORIES)}"
        )
    if category not in USCC_CATEGORIES[authority]:
        allowed = ", ".join(USCC_CATEGORIES[authority])
        raise InvalidRegistryId(f"category {category!r} (position 2) is not one of {allowed} for authority {authority}")
    if not division.isdigit():
        raise InvalidRegistryId(f"administrative division {division!r} (positions 3-8) must be 6 digits")
    check_organisation_code(code[8:17])
    expected = uscc_check_character(code[:17])
    if code[17] != expected:
        raise InvalidRegistryId(f"check character (position 18) is {code[17]!r}, expected {expected!r}")


def uscc_check_character(first17: str) -> str:
    """The 18th character of a unified social credit code: 31 - (weighted sum mod 31), 31 written 0."""
    total = sum(USCC_CHARACTERS.index(char) * weight for char, weight in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARACTERS[(31 - total % 31) % 31]


def check_organisation_code(code: str) -> None:
    """Raise InvalidRegistryId unless `code` is a GB 11714 organisation code (positions 9-17 of a USCC)."""
    if len(code) != 9 or not set(code) <= set(ORGANISATION_CODE_CHARACTERS):
        raise InvalidRegistryId(f"organisation code {code!r} must be 9 characters of 0-9 and A-Z")
    expected = organisation_code_check_character(code[:8])
    if code[8] != expected:
        raise InvalidRegistryId(
            f"organisation code {code!r} (positions 9-17): check character {code[8]!r}, expected {expected!r}"
        )


def organisation_code_check_character(first8: str) -> str:
    """The GB 11714 check character: 11 - (weighted sum mod 11), 10 written X and 11 written 0."""
    total = sum(
        ORGANISATION_CODE_CHARACTERS.index(char) * weight
        for char, weight in zip(first8, ORGANISATION_CODE_WEIGHTS, strict=True)
    )
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


# -- ISO 17442: legal entity identifier ------------------------------------------------------------------


def check_lei(code: str) -> None:
    """Raise InvalidRegistryId unless `code` is an LEI: 20 characters, MOD 97-10 check digits."""
    if len(code) != 20:
        raise InvalidRegistryId(f"an LEI has 20 characters, not {len(code)}")
    if not set(code) <= LEI_CHARACTERS:
        raise InvalidRegistryId("an LEI holds only digits and capital letters A-Z")
    if not code[18:].isdigit():
        raise InvalidRegistryId(f"an LEI ends in two check digits, not {code[18:]!r}")
    if mod97(code) != 1:
        raise InvalidRegistryId("LEI check digits do not match (ISO 7064 MOD 97-10)")


def mod97(code: str) -> int:
    """ISO 7064 MOD 97-10 of `code`, letters counted A=10 … Z=35 (1 for a valid LEI or IBAN)."""
    return int("".join(str(int(char, 36)) for char in code)) % 97
