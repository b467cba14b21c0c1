"""Metadata quality feedback for registrants, after DCAT-AP 3's essentials.

A registration that breaks the schema is refused (400). One that is well formed but thin is accepted, and
the response tells the registrant what to improve: DCAT-AP 3 makes `dct:title` and `dct:description`
mandatory for a dataset and recommends keywords, theme and licence. Each issue names the offering and the
field; the score (0-100) lets a registrant see progress at a glance.
"""

from collections.abc import Iterable
from typing import Protocol, TypedDict

from broker import metadata

PENALTY = {"warning": 20, "info": 5}


class Described(metadata.Described, Protocol):
    id: str


class Issue(TypedDict):
    offering: str | None  # None: the registration's own self-description
    field: str
    severity: str
    message: str


class Quality(TypedDict):
    score: int
    issues: list[Issue]


def _issue(offering: str | None, field: str, severity: str, message: str) -> Issue:
    return {"offering": offering, "field": field, "severity": severity, "message": message}


def offering_issues(offering: Described) -> list[Issue]:
    issues = []
    if not offering.description.strip():
        issues.append(_issue(offering.id, "description", "warning", "DCAT-AP 3 requires a description"))
    elif len(offering.description.strip()) < 20:
        issues.append(_issue(offering.id, "description", "info", "a description this short helps nobody find it"))
    if len(offering.title.strip()) < 4:
        issues.append(_issue(offering.id, "title", "info", "a title of a few letters is hard to find"))
    if not offering.keywords:
        issues.append(_issue(offering.id, "keywords", "info", "keywords (dcat:keyword) are recommended"))
    if not offering.theme:
        issues.append(_issue(offering.id, "theme", "info", "a theme (dcat:theme) is recommended"))
    if not offering.license:
        issues.append(_issue(offering.id, "license", "warning", "a licence (dct:license) is recommended"))
    return issues


def assess(description: str, offerings: Iterable[Described]) -> Quality:
    """Issues and a score for a registration's self-description and offerings."""
    issues = []
    if not description.strip():
        issues.append(_issue(None, "description", "warning", "describe the connector (dct:description)"))
    scores = []
    for offering in offerings:
        found = offering_issues(offering)
        issues.extend(found)
        scores.append(max(0, 100 - sum(PENALTY.get(i["severity"], 0) for i in found)))
    score = round(sum(scores) / len(scores)) if scores else (100 if description.strip() else 80)
    return {"score": score, "issues": issues}
