"""Data labels: what an asset is (GB/T 43697-2024 grade, sector category, personal information, home
jurisdiction), and the one rule for data derived from labelled data: it carries the strictest label of
its inputs (就高从严: core > important > general; personal information if any input holds it).

```python
strictest(Labels(classification="general"), Labels(classification="important", personal_information=True))
# Labels(classification="important", category=None, personal_information=True, home_jurisdiction=None)
```
"""

import re
from dataclasses import dataclass
from typing import Literal

import pycountry

from tessera.json import JSONObject

Level = Literal["general", "important", "core"]
LEVELS: tuple[Level, ...] = ("general", "important", "core")  # lowest to highest
State = Literal["draft", "released", "deprecated", "withdrawn"]
STATES: tuple[State, ...] = ("draft", "released", "deprecated", "withdrawn")
CATEGORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")  # a sector code, e.g. GB/T 4754 "C27" or "health"


def rank(level: str) -> int:
    """A level's place in `LEVELS`; an unknown level ranks as core (fail closed)."""
    return LEVELS.index(level) if level in LEVELS else len(LEVELS) - 1


def stricter(*levels: str) -> Level:
    """The highest of the levels: the one ordering every derived label and every rule uses."""
    return LEVELS[max((rank(level) for level in levels), default=0)]


def jurisdiction(code: str) -> str:
    """`code` if it is an ISO 3166-1 alpha-2 country code in upper case; ValueError otherwise."""
    if len(code) != 2 or not code.isupper() or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"must be an ISO 3166-1 alpha-2 country code in upper case (CN, DE, US …), not {code!r}")
    return code


def category(code: str) -> str:
    if not CATEGORY.match(code):
        raise ValueError(f"must be a sector code of letters, digits and . _ : / - (at most 64), not {code!r}")
    return code


@dataclass(frozen=True, kw_only=True)
class Labels:
    classification: Level = "general"
    category: str | None = None
    personal_information: bool = False
    home_jurisdiction: str | None = None

    def to_dict(self) -> JSONObject:
        return {
            "classification": self.classification,
            "category": self.category,
            "personal_information": self.personal_information,
            "home_jurisdiction": self.home_jurisdiction,
        }

    @classmethod
    def from_dict(cls, data: JSONObject) -> "Labels":
        """Labels as `to_dict` wrote them, checked; ValueError names what is wrong."""
        level = data.get("classification", "general")
        if level not in LEVELS:
            raise ValueError(f"classification must be one of {list(LEVELS)}, not {level!r}")
        category_code, home = data.get("category"), data.get("home_jurisdiction")
        personal = data.get("personal_information", False)
        if not isinstance(personal, bool):
            raise ValueError(f"personal_information must be true or false, not {personal!r}")
        return cls(
            classification=level,
            category=category(str(category_code)) if category_code is not None else None,
            personal_information=personal,
            home_jurisdiction=jurisdiction(str(home)) if home is not None else None,
        )

    def lower_than(self, other: "Labels") -> list[str]:
        """What in these labels is laxer than `other` (empty when they are at least as strict)."""
        found = []
        if rank(self.classification) < rank(other.classification):
            found.append(f"classification {self.classification!r} is lower than {other.classification!r}")
        if other.personal_information and not self.personal_information:
            found.append("personal_information is false, the source holds personal information")
        for name in ("category", "home_jurisdiction"):
            if getattr(other, name) is not None and getattr(self, name) != getattr(other, name):
                found.append(f"{name} {getattr(self, name)!r} is not the source's {getattr(other, name)!r}")
        return found


def strictest(*inputs: Labels) -> Labels:
    """The label of data derived from `inputs`. Category and home jurisdiction pass on only when the
    inputs agree on them: data of several categories or homes has no one label, so it is refused."""
    for name, plural in (("category", "categories"), ("home_jurisdiction", "home jurisdictions")):
        if len({getattr(labels, name) for labels in inputs}) > 1:
            raise ValueError(f"inputs of different {plural} have no one label")
    first = inputs[0] if inputs else Labels()
    return Labels(
        classification=stricter(*(labels.classification for labels in inputs)),
        category=first.category,
        personal_information=any(labels.personal_information for labels in inputs),
        home_jurisdiction=first.home_jurisdiction,
    )
