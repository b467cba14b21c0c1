"""The DSP messages the harness sends, built from what a scenario run knows so far.

Each builder takes the `Run` and returns one message. As consumer the harness asks for the offer as
the catalog published it; as provider it builds and signs the agreement itself (Tessera connectors
check the provider's signature and the usage-policy reference; other connectors ignore both terms).

A plain peer (`tessera selftest --plain`) sends what the Eclipse TCK sends instead: a message `@id` of
its own on every message, no Tessera terms (no signature, no usage-policy binding, offers without them),
a data address without `authorization`, `code` "1" and no `reason` on terminations and suspensions.
"""

from typing import TYPE_CHECKING, Any

from tessera import dsp
from tessera.clock import rfc3339
from tessera.crypto import Es256Signer, sign_document
from tessera.ids import new_id

if TYPE_CHECKING:
    from connector.selftest.steps import Run

ALLOW_USE = [{"action": "use"}]
TCK_TARGET = "urn:tessera:selftest:dataset"
TCK_OFFER = "urn:tessera:selftest:offer"
OWN_OFFER = "urn:tessera:selftest:offer:"  # offers the harness publishes itself; discovery skips them
TCK_POLICY = {"@id": "urn:tessera:selftest:usage-policy", "hash": "sha256:" + "0" * 64}


def uses(count: int) -> list[dict[str, Any]]:
    return [{"action": "use", "constraint": [{"leftOperand": "count", "operator": "lteq", "rightOperand": str(count)}]}]


def _pids(run: "Run") -> dict[str, str]:
    return {"providerPid": run.vars["providerPid"], "consumerPid": run.vars["consumerPid"]}


def _message(run: "Run", kind: str, **fields: Any) -> dict[str, Any]:
    """A DSP message; a plain peer, like the TCK, gives each one a message `@id` (not a pid)."""
    document = dsp.message(kind, **fields)
    return {"@id": new_id(), **document} if run.peer.plain else document


def _ended(run: "Run", reason: str) -> dict[str, Any]:
    """`code` and `reason` of a termination or suspension: the TCK's are code "1" and no reason."""
    return {"code": "1"} if run.peer.plain else {"code": "selftest", "reason": [reason]}


def _plain_offer(offer: dict[str, Any]) -> dict[str, Any]:
    """The offer as a plain consumer asks for it: the catalog's ODRL without Tessera terms or parties."""
    return {k: v for k, v in offer.items() if not k.startswith(dsp.TESSERA) and k not in ("assigner", "assignee")}


# -- catalog ---------------------------------------------------------------------------------------------


def catalog_request(run: "Run") -> dict[str, Any]:
    return _message(run, "CatalogRequestMessage")


# -- negotiation, the harness as consumer ----------------------------------------------------------------


def contract_request(run: "Run") -> dict[str, Any]:
    """The initial request for the offer under negotiation (`vars['offer']`, an ODRL offer)."""
    offer = {**run.vars["offer"], "target": run.vars["dataset"]}
    if run.peer.plain:
        offer = _plain_offer(offer)
    if "ask" in run.vars:
        offer["permission"] = run.vars["ask"]
    return _message(
        run,
        "ContractRequestMessage",
        consumerPid=run.vars["consumerPid"],
        offer=offer,
        callbackAddress=run.peer.dsp_url,
    )


def counter_request(run: "Run") -> dict[str, Any]:
    """A counter-request within what the provider offered (at most 2 uses)."""
    offer = {"@type": "Offer", "@id": new_id(), "target": run.vars["dataset"], "permission": uses(2)}
    return _message(run, "ContractRequestMessage", **_pids(run), offer=offer)


def accepted(run: "Run") -> dict[str, Any]:
    return _message(run, "ContractNegotiationEventMessage", **_pids(run), eventType="ACCEPTED")


def verification(run: "Run") -> dict[str, Any]:
    """The verification, countersigning the agreement (a Tessera term other connectors ignore)."""
    signed = "agreement" in run.vars and not run.peer.plain
    signature = sign_document(run.vars["agreement"], Es256Signer(run.peer.signer)) if signed else None
    return _message(run, "ContractAgreementVerificationMessage", **_pids(run), **{dsp.SIGNATURE: signature})


def negotiation_termination(run: "Run") -> dict[str, Any]:
    return _message(
        run, "ContractNegotiationTerminationMessage", **_pids(run), **_ended(run, "terminated by the self-test")
    )


# -- negotiation, the harness as provider ----------------------------------------------------------------


def contract_offer(run: "Run") -> dict[str, Any]:
    run.vars["asked"] = ALLOW_USE  # accepting this offer asks for it
    offer = {"@type": "Offer", "@id": new_id(), "target": run.vars.get("dataset", TCK_TARGET), "permission": ALLOW_USE}
    return _message(run, "ContractOfferMessage", **_pids(run), offer=offer)


def initial_offer(run: "Run") -> dict[str, Any]:
    run.vars["providerPid"] = new_id()
    offer = {"@type": "Offer", "@id": TCK_OFFER, "target": TCK_TARGET, "permission": ALLOW_USE}
    return _message(
        run, "ContractOfferMessage", providerPid=run.vars["providerPid"], offer=offer, callbackAddress=run.peer.dsp_url
    )


def agreement(run: "Run") -> dict[str, Any]:
    """A fresh agreement, signed by the harness; it becomes the run's agreement."""
    document: dict[str, Any] = {
        "@id": new_id(),
        "@type": "Agreement",
        "target": run.vars.get("dataset", TCK_TARGET),
        "assigner": run.peer.id,
        "assignee": run.target.participant_id,
        "timestamp": rfc3339(),
        "permission": run.vars.get("asked") or ALLOW_USE,  # what the consumer asked for or accepted
    }
    if not run.peer.plain:
        document[dsp.USAGE_POLICY] = TCK_POLICY
    run.vars["agreement"] = document
    run.vars["agreementId"] = document["@id"]
    if run.peer.plain:
        return _message(run, "ContractAgreementMessage", **_pids(run), agreement=document)
    signed = {**document, dsp.SIGNATURE: sign_document(document, Es256Signer(run.peer.signer))}
    return _message(run, "ContractAgreementMessage", **_pids(run), agreement=signed)


def finalized(run: "Run") -> dict[str, Any]:
    return _message(run, "ContractNegotiationEventMessage", **_pids(run), eventType="FINALIZED")


# -- transfer --------------------------------------------------------------------------------------------


def transfer_request(run: "Run") -> dict[str, Any]:
    return _message(
        run,
        "TransferRequestMessage",
        consumerPid=run.vars["consumerPid"],
        agreementId=run.vars.get("agreementId", "urn:tessera:selftest:no-such-agreement"),
        format=dsp.PULL_FORMAT,
        callbackAddress=run.peer.dsp_url,
    )


def transfer_start(run: "Run") -> dict[str, Any]:
    """A start; as provider the harness gives a pull data address with a fresh token each time."""
    address = None
    if run.role == "consumer":
        endpoint = run.peer.dsp_url.rsplit("/", 1)[0] + "/data/" + run.vars["providerPid"]
        address = open_address(endpoint) if run.peer.plain else dsp.data_address(endpoint, new_id())
    return _message(run, "TransferStartMessage", **_pids(run), dataAddress=address)


def open_address(endpoint: str) -> dict[str, Any]:
    """A pull data address without credentials, as the TCK sends it."""
    return {"@type": "DataAddress", "endpointType": dsp.HTTP_ENDPOINT_TYPE, "endpoint": endpoint}


def bare_transfer_start(run: "Run") -> dict[str, Any]:
    """A start without a data address (without --plain: the same bytes every time)."""
    return _message(run, "TransferStartMessage", **_pids(run))


def transfer_completion(run: "Run") -> dict[str, Any]:
    return _message(run, "TransferCompletionMessage", **_pids(run))


def transfer_suspension(run: "Run") -> dict[str, Any]:
    return _message(run, "TransferSuspensionMessage", **_pids(run), **_ended(run, "paused by the self-test"))


def transfer_termination(run: "Run") -> dict[str, Any]:
    return _message(run, "TransferTerminationMessage", **_pids(run), **_ended(run, "terminated by the self-test"))
