"""The attributes the operator verifies about a participant, checked before they are recorded.

Tokens carry these attributes as claims, and every connector's policies decide on them, so nothing is
recorded that its standard or the broker's configuration does not allow:

| field | allowed |
|---|---|
| `org` | the organisation's name, 1-256 characters |
| `region` | 1-64 characters, e.g. `EU-DE`, `CN-east` |
| `security_profile` | one of the broker's `security_profiles` (`broker.toml`; default base < trust < trust_plus) |
| `jurisdiction` | ISO 3166-1 alpha-2, upper case (`CN`, `DE`) |
| `roles` | up to 32 tokens of 1-64 letters, digits and `_ . : -` |
| `industry` | a code of 1-32 letters, digits and `. _ -` (e.g. GB/T 4754 `I64`, NACE `J62.01`) |
| `registry_type`, `registry_id` | both or neither: `uscc` (GB 32100), `lei` (ISO 17442) or `other` |

```python
claims = check_claims(Claims(org="Acme", region="CN-east", security_profile="trust"), ("base", "trust"))
```
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from tessera.errors import BadRequest
from tessera.jurisdictions import check_country_code
from tessera.registry_ids import REGISTRY_TYPES, InvalidRegistryId, check_registry_id

MAX_ORG_LENGTH = 256
MAX_REGION_LENGTH = 64
MAX_ROLES = 32
_ROLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_INDUSTRY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
REQUIRED = ("org", "region", "security_profile")


@dataclass(frozen=True, kw_only=True)
class Claims:
    """A participant's verified attributes, as the operator states them (unchecked until `check_claims`)."""

    org: str
    region: str
    security_profile: str
    jurisdiction: str | None = None
    roles: Sequence[str] = ()
    industry: str | None = None
    registry_type: str | None = None
    registry_id: str | None = None

    def as_fields(self) -> dict[str, Any]:
        """The record's columns (`broker.authority.ParticipantBase`)."""
        return {field.name: getattr(self, field.name) for field in fields(self)} | {"roles": list(self.roles)}


FIELDS = tuple(field.name for field in fields(Claims))


def check_claims(claims: Claims, security_profiles: Sequence[str]) -> Claims:
    """`claims` with roles deduplicated, if every field holds; else BadRequest naming each bad field."""
    problems = [
        problem
        for problem in (
            _text("org", claims.org, MAX_ORG_LENGTH),
            _text("region", claims.region, MAX_REGION_LENGTH),
            _security_profile(claims.security_profile, security_profiles),
            _jurisdiction(claims.jurisdiction),
            _roles(claims.roles),
            _industry(claims.industry),
            _registry(claims.registry_type, claims.registry_id),
        )
        if problem
    ]
    if problems:
        raise BadRequest("; ".join(problems), reasons=problems)
    return replace(claims, roles=tuple(dict.fromkeys(claims.roles)))


def changed(current: Claims, changes: Mapping[str, object]) -> Claims:
    """`current` with `changes` applied: a field named with None is cleared (the required ones cannot be)."""
    if unknown := sorted(set(changes) - set(FIELDS)):
        raise BadRequest(f"{', '.join(unknown)}: not a participant attribute; one of {', '.join(FIELDS)}")
    if cleared := [name for name in REQUIRED if name in changes and changes[name] is None]:
        raise BadRequest(f"{', '.join(cleared)}: required, cannot be cleared")
    values: dict[str, Any] = dict(changes)  # each value is checked by check_claims afterwards
    if "roles" in values and values["roles"] is None:
        values["roles"] = ()
    return replace(current, **values)


def _text(name: str, value: object, limit: int) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
        return f"{name}: must be 1-{limit} printable characters"
    return None


def _security_profile(value: object, allowed: Sequence[str]) -> str | None:
    if value not in allowed:
        return f"security_profile: {value!r} is not one of {', '.join(allowed)} (broker.toml security_profiles)"
    return None


def _jurisdiction(value: object) -> str | None:
    if value is None:
        return None
    try:
        check_country_code(str(value))
    except ValueError as exc:
        return f"jurisdiction: {exc}"
    return None


def _roles(value: object) -> str | None:
    allowed = "tokens of 1-64 letters, digits and _ . : - (first a letter or digit)"
    if isinstance(value, str) or not isinstance(value, Sequence):
        return f"roles: must be a list of {allowed}"
    if len(value) > MAX_ROLES:
        return f"roles: at most {MAX_ROLES}, not {len(value)}"
    bad = [role for role in value if not isinstance(role, str) or not _ROLE.fullmatch(role)]
    return f"roles: {', '.join(map(repr, bad))} not {allowed}" if bad else None


def _industry(value: object) -> str | None:
    if value is None or (isinstance(value, str) and _INDUSTRY.fullmatch(value)):
        return None
    return f"industry: {value!r} is not a code of 1-32 letters, digits and . _ - (e.g. I64, J62.01)"


def _registry(registry_type: object, registry_id: object) -> str | None:
    if registry_type is None and registry_id is None:
        return None
    if registry_type is None or registry_id is None:
        return "registry_type, registry_id: give both or neither"
    if registry_type not in REGISTRY_TYPES:
        return f"registry_type: {registry_type!r} is not one of {', '.join(REGISTRY_TYPES)}"
    if not isinstance(registry_id, str):
        return "registry_id: must be a string"
    try:
        check_registry_id(str(registry_type), registry_id)
    except InvalidRegistryId as exc:
        return f"registry_id: {exc}"
    return None
