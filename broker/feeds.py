"""Feeds for machines: the change feed for mirrors and other brokers, the DCAT catalog for harvesters.

`GET /changes?since=N` answers the events after sequence number N in order, and `next`, the `since` for the
following call: a mirror that remembers `next` never misses or repeats a change. `GET /catalog` exports
every searchable offering as a DCAT 3 catalog (JSON-LD), paged by `after`, for open-data portals.
"""

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker import events
from broker.authority import Participant
from broker.entries import Offering, Registration, iso
from broker.registry import Registry, integer_param

DCAT_CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
JSON_LD = "application/ld+json"


async def changes(request: Request) -> Response:
    registry: Registry = request.state.registry
    after = integer_param(request.query_params, "since", 0, 0, 2**62)
    limit = integer_param(request.query_params, "limit", 100, 1, events.MAX_EVENTS)
    found = await events.since(registry.db, after, limit=limit)
    following = found[-1].seq if found else after
    return JSONResponse({"events": [e.public() for e in found], "next": following, "more": len(found) == limit})


async def catalog(request: Request) -> Response:
    registry: Registry = request.state.registry
    after = integer_param(request.query_params, "after", 0, 0, 2**62)
    limit = integer_param(request.query_params, "limit", 500, 1, 5000)
    suspended = select(Participant.id).where(col(Participant.suspended))
    statement = (
        select(Offering, Registration)
        .join(Registration, col(Registration.participant_id) == col(Offering.participant_id))
        .where(col(Offering.pk) > after, col(Offering.listed), col(Offering.participant_id).not_in(suspended))
        .order_by(col(Offering.pk))
        .limit(limit)
    )
    async with registry.db.session() as session:
        rows = (await session.exec(statement)).all()
    body: dict[str, object] = {
        "@context": DCAT_CONTEXT,
        "@id": registry.url + "/catalog",
        "@type": "dcat:Catalog",
        "dct:title": "Tessera broker catalog",
        "dcat:dataset": [dataset(registry.url, offering, registration) for offering, registration in rows],
    }
    if len(rows) == limit and rows:
        body["next"] = f"{registry.url}/catalog?after={rows[-1][0].pk}&limit={limit}"
    return JSONResponse(body, media_type=JSON_LD)


def dataset(base: str, offering: Offering, registration: Registration) -> dict[str, object]:
    """One offering as a DCAT-AP 3 dataset (a JSON-LD node); the product code is its identifier."""
    item: dict[str, object] = {
        "@id": f"{base}/products/{offering.product_code}",
        "@type": "dcat:Dataset",
        "dct:identifier": offering.product_code,
        "dct:title": offering.title,
        "dct:description": offering.description,
        "dcat:keyword": offering.keywords,
        "dct:publisher": {"@id": offering.participant_id},
        "dct:issued": {"@value": iso(offering.created_at), "@type": "xsd:dateTime"},
        "dct:modified": {"@value": iso(offering.changed_at), "@type": "xsd:dateTime"},
        "dcat:distribution": [
            {
                "@type": "dcat:Distribution",
                "dcat:accessURL": {"@id": registration.endpoint},
                "dct:format": offering.format,
            }
        ],
    }
    optional = {
        "dcat:theme": offering.theme,
        "dct:license": offering.license,
        "dct:spatial": offering.region,
        "dct:language": offering.language,
        "dct:accessRights": offering.classification,
    }
    return item | {key: value for key, value in optional.items() if value}
