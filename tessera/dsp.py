"""Dataspace Protocol 2025-1 messages: parsing what peers send and building what we send.

JSON-LD stays at this edge. Inbound messages are read as compact JSON (extra terms and `@context`
entries from other connectors are tolerated); outbound messages are always the 2025-1 compact form
with the pinned context, and validate against the official schemas.
"""

from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from tessera.errors import InvalidMessage
from tessera.json import JSON, JSONObject, load_object, nul_at
from tessera.urls import check_url

CONTEXT = "https://w3id.org/dspace/2025/1/context.jsonld"
VERSION = "2025-1"
TESSERA = "https://w3id.org/tessera/v1/"  # our extension terms, as absolute IRIs
SIGNATURE = TESSERA + "signature"
USAGE_POLICY = TESSERA + "usagePolicy"
PULL_FORMAT = "HttpData-PULL"
PUSH_FORMAT = "HttpData-PUSH"
HTTP_ENDPOINT_TYPE = "https://w3id.org/idsa/v4.1/HTTP"

NegotiationState = Literal["REQUESTED", "OFFERED", "ACCEPTED", "AGREED", "VERIFIED", "FINALIZED", "TERMINATED"]
TransferState = Literal["REQUESTED", "STARTED", "SUSPENDED", "COMPLETED", "TERMINATED"]


# -- inbound -----------------------------------------------------------------------------------------


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: str = Field(alias="@type")


class CatalogRequest(Message):
    filter: list[JSON] = []


class OfferRef(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(alias="@id")
    target: str | None = None


def _callback(value: str | None) -> str | None:
    return None if value is None else check_url(value, "callbackAddress")


Callback = Annotated[str | None, AfterValidator(_callback)]


class ContractRequest(Message):
    consumerPid: str
    providerPid: str | None = None
    offer: OfferRef
    callbackAddress: Callback = None


class ContractOffer(Message):
    providerPid: str
    consumerPid: str | None = None
    offer: OfferRef
    callbackAddress: Callback = None


class ContractAgreement(Message):
    providerPid: str
    consumerPid: str
    agreement: JSONObject


class AgreementVerification(Message):
    providerPid: str
    consumerPid: str


class NegotiationEvent(Message):
    providerPid: str
    consumerPid: str
    eventType: Literal["ACCEPTED", "FINALIZED"]


class Termination(Message):
    providerPid: str
    consumerPid: str
    code: str | None = None
    reason: list[JSON] = []


class TransferRequest(Message):
    consumerPid: str
    agreementId: str
    format: str
    callbackAddress: Annotated[str, AfterValidator(lambda url: check_url(url, "callbackAddress"))]
    dataAddress: JSONObject | None = None


class TransferStart(Message):
    providerPid: str
    consumerPid: str
    dataAddress: JSONObject | None = None


class TransferUpdate(Message):
    """Completion, suspension and termination of a transfer."""

    providerPid: str
    consumerPid: str
    code: str | None = None
    reason: list[JSON] = []


M = TypeVar("M", bound=Message)


def parse(body: bytes, model: type[M], *, expected_type: str) -> M:
    """Read one inbound message, or raise InvalidMessage saying what is wrong with it."""
    document = compact(load_object(body, "the message", InvalidMessage))
    if document.get("@type") != expected_type:
        raise InvalidMessage(f"expected a {expected_type}, got @type {document.get('@type')!r}")
    try:
        message = model.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidMessage(f"invalid {expected_type}: {problems}") from exc
    if (where := nul_at(document)) is not None:
        raise InvalidMessage(f"invalid {expected_type}: {where}: must not hold U+0000 (NUL)")
    return message


# Other connectors speak the same vocabulary with prefixes (`dspace:consumerPid`, `odrl:action`), full IRIs,
# JSON-LD value and node objects (`{"@value": "x"}`, `{"@id": "urn:x"}`), and single values where we expect
# arrays. `compact` maps all of that onto the plain 2025-1 terms before a message is validated.
_NAMESPACES = (
    "https://w3id.org/dspace/2025/1/",
    "https://w3id.org/dspace/v0.8/",
    "http://www.w3.org/ns/odrl/2/",
    "dspace:",
    "odrl:",
)
_SCALARS = {
    "target",
    "assigner",
    "assignee",
    "action",
    "leftOperand",
    "operator",
    "eventType",
    "state",
    "format",
    "endpointType",
    "code",
}
_ARRAYS = {"reason", "permission", "prohibition", "obligation", "constraint", "endpointProperties", "filter"}


def _local(name: str) -> str:
    for namespace in _NAMESPACES:
        if name.startswith(namespace):
            return name[len(namespace) :]
    return name


def compact(value: JSON, key: str | None = None) -> JSON:
    """A peer's message in the plain compact form of DSP 2025-1 (see the note above)."""
    if isinstance(value, dict):
        if key in _SCALARS and len(value) == 1 and ("@id" in value or "@value" in value):
            return compact(next(iter(value.values())), key)
        if value.get("@type") == "@json":
            return value  # a JSON literal: its value is data, not vocabulary, and its type says so
        if set(value) <= {"@value", "@type", "@language"} and "@value" in value:
            return value["@value"]
        return {
            _local(k) if not k.startswith("@") or k == "@type" else k: compact(v, _local(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [compact(item, None if key in _ARRAYS else key) for item in value]
    if key in _ARRAYS and value is not None:
        return [compact(value)]
    if isinstance(value, str) and key in (_SCALARS | {"@type"}):
        return _local(value)
    return value


# -- outbound ----------------------------------------------------------------------------------------


def message(kind: str, **fields: JSON) -> JSONObject:
    return {"@context": [CONTEXT], "@type": kind, **{k: v for k, v in fields.items() if v is not None}}


def negotiation(provider_pid: str, consumer_pid: str, state: str) -> JSONObject:
    return message("ContractNegotiation", providerPid=provider_pid, consumerPid=consumer_pid, state=state)


def transfer_process(provider_pid: str, consumer_pid: str, state: str) -> JSONObject:
    return message("TransferProcess", providerPid=provider_pid, consumerPid=consumer_pid, state=state)


def data_address(endpoint: str, token: str, **properties: str | None) -> JSONObject:
    extra = [{"@type": "EndpointProperty", "name": k, "value": v} for k, v in properties.items() if v is not None]
    return {
        "@type": "DataAddress",
        "endpointType": HTTP_ENDPOINT_TYPE,
        "endpoint": endpoint,
        "endpointProperties": [
            {"@type": "EndpointProperty", "name": "authorization", "value": token},
            {"@type": "EndpointProperty", "name": "authType", "value": "bearer"},
            *extra,
        ],
    }


def endpoint_property(address: JSONObject, name: str) -> str | None:
    for prop in address.get("endpointProperties") or []:
        if isinstance(prop, dict) and prop.get("name") == name:
            return str(prop.get("value"))
    return None


def version_document(path: str, *, service_id: str | None = None, auth: JSONObject | None = None) -> JSONObject:
    """`/.well-known/dspace-version`: where 2025-1 is served, and optionally its DataService id and auth."""
    version: JSONObject = {"version": VERSION, "path": path, "binding": "HTTPS"}
    if service_id is not None:
        version["serviceId"] = service_id
    if auth is not None:
        version["auth"] = auth
    return {"protocolVersions": [version]}


def error(kind: str, *, provider_pid: str | None, consumer_pid: str | None, code: str, reason: list[str]) -> JSONObject:
    """A `ContractNegotiationError`, `TransferError` or `CatalogError`."""
    if kind == "CatalogError":
        return message(kind, code=code, reason=reason)
    return message(kind, providerPid=provider_pid or "", consumerPid=consumer_pid or "", code=code, reason=reason)
