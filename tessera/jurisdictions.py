"""Jurisdictions as ISO 3166-1 alpha-2 country codes (`CN`, `DE`), from pycountry's maintained list.

Upper case only: `cn` is refused rather than silently corrected, so the value a policy compares is the
value the operator typed. Regional groupings (`EU`) are not countries and are refused.
"""

import pycountry


def is_country_code(code: str) -> bool:
    """Whether `code` is an assigned ISO 3166-1 alpha-2 code, written in upper case."""
    return len(code) == 2 and code.isascii() and code.isupper() and pycountry.countries.get(alpha_2=code) is not None


def check_country_code(code: str) -> str:
    """`code`, if it is an ISO 3166-1 alpha-2 code in upper case; else ValueError saying why."""
    if not is_country_code(code):
        hint = f" (write {code.upper()})" if is_country_code(code.upper()) else ""
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code in upper case{hint}, e.g. CN, DE")
    return code
