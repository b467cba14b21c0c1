"""What describes an offering: the metadata a push brings, the part of it a DSP catalog carries, its hash.

The content hash covers every field together with the participant and offering ids, so a product
certificate names exactly what was registered.
"""

from typing import Protocol

# pydantic reads these as the type of `ProductHistory.snapshot`, and on Python 3.11 it needs this TypedDict.
from typing_extensions import TypedDict

from tessera.identity import canonical_json, content_hash


class CatalogMetadata(TypedDict):
    """What a DSP catalog says of a dataset, and all a crawl takes from it."""

    title: str
    description: str
    keywords: list[str]


class Metadata(CatalogMetadata):
    """An offering's registered metadata: the catalog's fields and those only a push brings."""

    format: str
    theme: str
    license: str
    classification: str
    region: str
    language: str


EMPTY: Metadata = {
    "title": "",
    "description": "",
    "keywords": [],
    "format": "",
    "theme": "",
    "license": "",
    "classification": "",
    "region": "",
    "language": "",
}


class Described(Protocol):
    """Anything that carries an offering's metadata as attributes: a pushed offering, a stored one."""

    title: str
    description: str
    keywords: list[str]
    format: str
    theme: str
    license: str
    classification: str
    region: str
    language: str


def metadata_of(offering: Described) -> Metadata:
    return {
        "title": offering.title,
        "description": offering.description,
        "keywords": offering.keywords,
        "format": offering.format,
        "theme": offering.theme,
        "license": offering.license,
        "classification": offering.classification,
        "region": offering.region,
        "language": offering.language,
    }


def metadata_hash(participant_id: str, offering_id: str, metadata: Metadata) -> str:
    return content_hash(canonical_json({"participant_id": participant_id, "offering_id": offering_id, **metadata}))
