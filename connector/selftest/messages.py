"""The DSP messages the harness sends, built from what a scenario run knows so far.

Each builder takes the `Run` and returns one message. As consumer the harness asks for the offer as
the catalog published it; as provider it builds and signs the agreement itself (Tessera connectors
check the provider's signature and the usage-policy reference; other connectors ignore both terms).
"""

from typing import TYPE_CHECKING, Any

from connector import agreements
from tessera import dsp
from tessera.clock import rfc3339
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


# -- catalog ---------------------------------------------------------------------------------------------


def catalog_request(_run: "Run") -> dict[str, Any]:
    return dsp.message("CatalogRequestMessage")


# -- negotiation, the harness as consumer ----------------------------------------------------------------


def contract_request(run: "Run") -> dict[str, Any]:
    """The initial request for the offer under negotiation (`vars['offer']`, an ODRL offer)."""
    offer = {**run.vars["offer"], "target": run.vars["dataset"]}
    if "ask" in run.vars:
        offer["permission"] = run.vars["ask"]
    return dsp.message(
        "ContractRequestMessage", consumerPid=run.vars["consumerPid"], offer=offer, callbackAddress=run.peer.dsp_url
    )


def counter_request(run: "Run") -> dict[str, Any]:
    """A counter-request within what the provider offered (at most 2 uses)."""
    offer = {"@type": "Offer", "@id": new_id(), "target": run.vars["dataset"], "permission": uses(2)}
    return dsp.message("ContractRequestMessage", **_pids(run), offer=offer)


def accepted(run: "Run") -> dict[str, Any]:
    return dsp.message("ContractNegotiationEventMessage", **_pids(run), eventType="ACCEPTED")


def verification(run: "Run") -> dict[str, Any]:
    """The verification, countersigning the agreement (a Tessera term other connectors ignore)."""
    signature = agreements.sign(run.vars["agreement"], run.peer.signer) if "agreement" in run.vars else None
    return dsp.message("ContractAgreementVerificationMessage", **_pids(run), **{dsp.SIGNATURE: signature})


def negotiation_termination(run: "Run") -> dict[str, Any]:
    return dsp.message(
        "ContractNegotiationTerminationMessage", **_pids(run), code="selftest", reason=["terminated by the self-test"]
    )


# -- negotiation, the harness as provider ----------------------------------------------------------------


def contract_offer(run: "Run") -> dict[str, Any]:
    run.vars["asked"] = ALLOW_USE  # accepting this offer asks for it
    offer = {"@type": "Offer", "@id": new_id(), "target": run.vars.get("dataset", TCK_TARGET), "permission": ALLOW_USE}
    return dsp.message("ContractOfferMessage", **_pids(run), offer=offer)


def initial_offer(run: "Run") -> dict[str, Any]:
    run.vars["providerPid"] = new_id()
    offer = {"@type": "Offer", "@id": TCK_OFFER, "target": TCK_TARGET, "permission": ALLOW_USE}
    return dsp.message(
        "ContractOfferMessage", providerPid=run.vars["providerPid"], offer=offer, callbackAddress=run.peer.dsp_url
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
        dsp.USAGE_POLICY: TCK_POLICY,
    }
    run.vars["agreement"] = document
    run.vars["agreementId"] = document["@id"]
    signed = {**document, dsp.SIGNATURE: agreements.sign(document, run.peer.signer)}
    return dsp.message("ContractAgreementMessage", **_pids(run), agreement=signed)


def finalized(run: "Run") -> dict[str, Any]:
    return dsp.message("ContractNegotiationEventMessage", **_pids(run), eventType="FINALIZED")


# -- transfer --------------------------------------------------------------------------------------------


def transfer_request(run: "Run") -> dict[str, Any]:
    return dsp.message(
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
        address = dsp.data_address(endpoint, new_id())
    return dsp.message("TransferStartMessage", **_pids(run), dataAddress=address)


def bare_transfer_start(run: "Run") -> dict[str, Any]:
    """A start without a data address, the same bytes every time."""
    return dsp.message("TransferStartMessage", **_pids(run))


def transfer_completion(run: "Run") -> dict[str, Any]:
    return dsp.message("TransferCompletionMessage", **_pids(run))


def transfer_suspension(run: "Run") -> dict[str, Any]:
    return dsp.message("TransferSuspensionMessage", **_pids(run), code="selftest", reason=["paused by the self-test"])


def transfer_termination(run: "Run") -> dict[str, Any]:
    return dsp.message(
        "TransferTerminationMessage", **_pids(run), code="selftest", reason=["terminated by the self-test"]
    )
