"""The scenario table: the TCK's areas, every legal path of the DSP 2025-1 state machines and the
characteristic illegal transitions, named like the TCK (`MET`, `CAT`, `CN`, `CN_C`, `TP`, `TP_C`).

`CN`/`TP`: the connector under test is the provider, the harness the consumer. `CN_C`/`TP_C`: the
connector under test is the consumer (driven by its management API), the harness the provider.
Groups: `01` legal paths, `02` terminations and changes from either side, `03` negative cases.
"""

from dataclasses import dataclass, replace

from connector.selftest import actions
from connector.selftest import messages as m
from connector.selftest.steps import (
    Dataset,
    NewProcess,
    Operator,
    Process,
    Receive,
    Role,
    Send,
    State,
    Step,
    Unknown,
    Version,
)


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    role: Role
    steps: tuple[Step, ...]

    @property
    def needs_management(self) -> bool:
        return any(isinstance(step, Operator) for step in self.steps)


N: Process = "negotiations"
T: Process = "transfers"
P_NEG = "/negotiations/{providerPid}"
C_NEG = "/negotiations/{consumerPid}"
P_TRANSFER = "/transfers/{providerPid}"
C_TRANSFER = "/transfers/{consumerPid}"


def refused(send: Send) -> Send:
    """The same message where the state machine does not allow it: answered 400 with a DSP error."""
    return replace(send, expect=400, state=None)


# -- what the operator does, alike in either role ---------------------------------------------------------

OPERATOR_TERMINATES = (
    Operator(actions.terminate),
    Receive("ContractNegotiationTerminationMessage"),
    State(N, "TERMINATED"),
)
OPERATOR_SUSPENDS = (Operator(actions.suspend_transfer), Receive("TransferSuspensionMessage"))
OPERATOR_SUSPENDS_AND_RESUMES = (
    *OPERATOR_SUSPENDS,
    State(T, "SUSPENDED"),
    Operator(actions.resume_transfer),
    Receive("TransferStartMessage"),
    State(T, "STARTED"),
)
OPERATOR_COMPLETES = (Operator(actions.complete_transfer), Receive("TransferCompletionMessage"), State(T, "COMPLETED"))
OPERATOR_ENDS = (Operator(actions.terminate_transfer), Receive("TransferTerminationMessage"), State(T, "TERMINATED"))

# -- the connector under test as provider -------------------------------------------------------------------

REQUEST = Send(m.contract_request, "/negotiations/request", 201, state="REQUESTED")
AGREEMENT = (Receive("ContractAgreementMessage"), State(N, "AGREED"))
AGREED = (REQUEST, *AGREEMENT)
VERIFY = Send(m.verification, P_NEG + "/agreement/verification")
FINALIZE = (VERIFY, Receive("ContractNegotiationEventMessage", event="FINALIZED"), State(N, "FINALIZED"))
LIMITED = (Operator(actions.publish_limited_offer), REQUEST, Receive("ContractOfferMessage"), State(N, "OFFERED"))
MANUAL = (Operator(actions.publish_manual_offer), REQUEST, State(N, "REQUESTED"))
P_ACCEPT = Send(m.accepted, P_NEG + "/events")
P_TERMINATE = Send(m.negotiation_termination, P_NEG + "/termination")
P_TERMINATED = (P_TERMINATE, State(N, "TERMINATED"))

TRANSFER_REQUEST = Send(m.transfer_request, "/transfers/request", 201, state="REQUESTED")
STARTED = (
    *AGREED,
    *FINALIZE,
    NewProcess(),
    TRANSFER_REQUEST,
    Receive("TransferStartMessage", has="dataAddress"),
    State(T, "STARTED"),
)
P_COMPLETE = Send(m.transfer_completion, P_TRANSFER + "/completion")
P_SUSPEND = Send(m.transfer_suspension, P_TRANSFER + "/suspension")
P_RESUME = Send(m.bare_transfer_start, P_TRANSFER + "/start")
P_END = Send(m.transfer_termination, P_TRANSFER + "/termination")
P_COMPLETED = (P_COMPLETE, State(T, "COMPLETED"))
P_SUSPENDED = (P_SUSPEND, State(T, "SUSPENDED"))
P_RESUMED = (P_RESUME, State(T, "STARTED"))
P_ENDED = (P_END, State(T, "TERMINATED"))

PROVIDER = [
    Scenario(
        "CN:01-01", "request, provider agrees, consumer verifies, provider finalizes", "provider", (*AGREED, *FINALIZE)
    ),
    Scenario(
        "CN:01-02",
        "request beyond the offer, provider counter-offers, consumer accepts, finalized",
        "provider",
        (*LIMITED, P_ACCEPT, *AGREEMENT, *FINALIZE),
    ),
    Scenario(
        "CN:01-03",
        "provider counter-offers, consumer counter-requests within it, finalized",
        "provider",
        (*LIMITED, Send(m.counter_request, P_NEG + "/request"), *AGREEMENT, *FINALIZE),
    ),
    Scenario(
        "CN:01-04",
        "request waits for the provider's operator, who agrees; finalized",
        "provider",
        (*MANUAL, Operator(actions.accept), *AGREEMENT, *FINALIZE),
    ),
    Scenario(
        "CN:01-05",
        "a repeated initial request is answered as the first",
        "provider",
        (REQUEST, REQUEST, Receive("ContractAgreementMessage"), *FINALIZE),
    ),
    Scenario("CN:02-01", "consumer terminates in REQUESTED", "provider", (*MANUAL, *P_TERMINATED)),
    Scenario("CN:02-02", "consumer terminates in OFFERED", "provider", (*LIMITED, *P_TERMINATED)),
    Scenario("CN:02-03", "consumer terminates in AGREED", "provider", (*AGREED, *P_TERMINATED)),
    Scenario("CN:02-04", "provider terminates in REQUESTED", "provider", (*MANUAL, *OPERATOR_TERMINATES)),
    Scenario(
        "CN:02-05",
        "provider refuses the request (access policy) and terminates",
        "provider",
        (
            Operator(actions.publish_refusing_offer),
            REQUEST,
            Receive("ContractNegotiationTerminationMessage"),
            State(N, "TERMINATED"),
        ),
    ),
    Scenario("CN:03-01", "an unknown negotiation is 404", "provider", (Unknown(N),)),
    Scenario(
        "CN:03-02",
        "verification before any agreement (OFFERED) is refused",
        "provider",
        (*LIMITED, refused(VERIFY), State(N, "OFFERED")),
    ),
    Scenario(
        "CN:03-03", "ACCEPTED event in AGREED is refused", "provider", (*AGREED, refused(P_ACCEPT), State(N, "AGREED"))
    ),
    Scenario(
        "CN:03-04",
        "termination after FINALIZED is refused",
        "provider",
        (*AGREED, *FINALIZE, refused(P_TERMINATE), State(N, "FINALIZED")),
    ),
    Scenario(
        "CN:03-05",
        "verification after TERMINATED is refused",
        "provider",
        (*AGREED, P_TERMINATE, refused(VERIFY), State(N, "TERMINATED")),
    ),
    Scenario("TP:01-01", "request under the agreement, provider starts (pull data address)", "provider", STARTED),
    Scenario("TP:01-02", "started, consumer completes", "provider", (*STARTED, *P_COMPLETED)),
    Scenario(
        "TP:01-03",
        "started, consumer suspends, resumes and completes",
        "provider",
        (*STARTED, *P_SUSPENDED, *P_RESUMED, *P_COMPLETED),
    ),
    Scenario("TP:01-04", "started, consumer terminates", "provider", (*STARTED, *P_ENDED)),
    Scenario(
        "TP:01-05",
        "a repeated transfer request is answered as the first",
        "provider",
        (*STARTED, TRANSFER_REQUEST, State(T, "STARTED")),
    ),
    Scenario(
        "TP:01-06",
        "consumer suspends and resumes twice (same messages again)",
        "provider",
        (*STARTED, *P_SUSPENDED, *P_RESUMED, *P_SUSPENDED, *P_RESUMED),
    ),
    Scenario("TP:02-01", "provider suspends and resumes", "provider", (*STARTED, *OPERATOR_SUSPENDS_AND_RESUMES)),
    Scenario("TP:02-02", "provider completes", "provider", (*STARTED, *OPERATOR_COMPLETES)),
    Scenario("TP:02-03", "provider terminates", "provider", (*STARTED, *OPERATOR_ENDS)),
    Scenario("TP:02-04", "provider suspends, consumer resumes", "provider", (*STARTED, *OPERATOR_SUSPENDS, *P_RESUMED)),
    Scenario("TP:03-01", "an unknown transfer is 404", "provider", (Unknown(T),)),
    Scenario("TP:03-02", "a request under an unknown agreement is refused", "provider", (refused(TRANSFER_REQUEST),)),
    Scenario(
        "TP:03-03",
        "completion while SUSPENDED is refused",
        "provider",
        (*STARTED, *P_SUSPENDED, refused(P_COMPLETE), State(T, "SUSPENDED")),
    ),
    Scenario(
        "TP:03-04",
        "completion after TERMINATED is refused",
        "provider",
        (*STARTED, P_END, refused(P_COMPLETE), State(T, "TERMINATED")),
    ),
    Scenario(
        "TP:03-05",
        "suspension after COMPLETED is refused",
        "provider",
        (*STARTED, P_COMPLETE, refused(P_SUSPEND), State(T, "COMPLETED")),
    ),
    Scenario(
        "TP:03-06",
        "start after COMPLETED is refused",
        "provider",
        (*STARTED, P_COMPLETE, refused(P_RESUME), State(T, "COMPLETED")),
    ),
]

# -- the connector under test as consumer -------------------------------------------------------------------

C_REQUESTED = (Operator(actions.negotiate), Receive("ContractRequestMessage"), State(N, "REQUESTED"))
C_OFFER = Send(m.contract_offer, C_NEG + "/offers")
C_OFFERED = (*C_REQUESTED, C_OFFER, State(N, "OFFERED"))
C_ACCEPTS = (Operator(actions.accept), Receive("ContractNegotiationEventMessage", event="ACCEPTED"))
C_ACCEPTED = (*C_OFFERED, *C_ACCEPTS, State(N, "ACCEPTED"))
C_AGREEMENT = Send(m.agreement, C_NEG + "/agreement")
C_AGREE = (C_AGREEMENT, Receive("ContractAgreementVerificationMessage"), State(N, "VERIFIED"))
C_FINALIZATION = Send(m.finalized, C_NEG + "/events")
C_FINALIZE = (*C_AGREE, C_FINALIZATION, State(N, "FINALIZED"))
C_TERMINATE = Send(m.negotiation_termination, C_NEG + "/termination")
C_TERMINATED = (C_TERMINATE, State(N, "TERMINATED"))
C_FINALIZED = (*C_REQUESTED, *C_FINALIZE)

C_TRANSFER_REQUESTED = (
    *C_FINALIZED,
    NewProcess(),
    Operator(actions.transfer),
    Receive("TransferRequestMessage"),
    State(T, "REQUESTED"),
)
C_START = Send(m.transfer_start, C_TRANSFER + "/start")
C_BARE_START = Send(m.bare_transfer_start, C_TRANSFER + "/start")
C_COMPLETE = Send(m.transfer_completion, C_TRANSFER + "/completion")
C_SUSPEND = Send(m.transfer_suspension, C_TRANSFER + "/suspension")
C_END = Send(m.transfer_termination, C_TRANSFER + "/termination")
C_RESTARTED = (C_START, State(T, "STARTED"))
C_STARTED = (*C_TRANSFER_REQUESTED, *C_RESTARTED)
C_COMPLETED = (C_COMPLETE, State(T, "COMPLETED"))
C_SUSPENDED = (C_SUSPEND, State(T, "SUSPENDED"))
C_ENDED = (C_END, State(T, "TERMINATED"))

CONSUMER = [
    Scenario(
        "CN_C:01-01",
        "consumer requests, provider agrees, consumer verifies, provider finalizes",
        "consumer",
        C_FINALIZED,
    ),
    Scenario(
        "CN_C:01-02",
        "provider counter-offers, consumer accepts, agreed and finalized",
        "consumer",
        (*C_ACCEPTED, *C_FINALIZE),
    ),
    Scenario(
        "CN_C:01-03",
        "provider counter-offers, consumer counter-requests, agreed and finalized",
        "consumer",
        (*C_OFFERED, Operator(actions.counter), Receive("ContractRequestMessage"), State(N, "REQUESTED"), *C_FINALIZE),
    ),
    Scenario(
        "CN_C:01-04",
        "provider offers first, consumer accepts, agreed and finalized",
        "consumer",
        (
            Send(m.initial_offer, "/negotiations/offers", 201, state="OFFERED"),
            State(N, "OFFERED"),
            *C_ACCEPTS,
            *C_FINALIZE,
        ),
    ),
    Scenario("CN_C:02-01", "provider terminates in REQUESTED", "consumer", (*C_REQUESTED, *C_TERMINATED)),
    Scenario("CN_C:02-02", "provider terminates in OFFERED", "consumer", (*C_OFFERED, *C_TERMINATED)),
    Scenario("CN_C:02-03", "provider terminates in ACCEPTED", "consumer", (*C_ACCEPTED, *C_TERMINATED)),
    Scenario("CN_C:02-04", "provider terminates in VERIFIED", "consumer", (*C_REQUESTED, *C_AGREE, *C_TERMINATED)),
    Scenario("CN_C:02-05", "consumer terminates in REQUESTED", "consumer", (*C_REQUESTED, *OPERATOR_TERMINATES)),
    Scenario("CN_C:02-06", "consumer terminates in OFFERED", "consumer", (*C_OFFERED, *OPERATOR_TERMINATES)),
    Scenario("CN_C:03-01", "an unknown negotiation is 404", "consumer", (Unknown(N),)),
    Scenario(
        "CN_C:03-02",
        "FINALIZED event in REQUESTED is refused",
        "consumer",
        (*C_REQUESTED, refused(C_FINALIZATION), State(N, "REQUESTED")),
    ),
    Scenario(
        "CN_C:03-03",
        "agreement after TERMINATED is refused",
        "consumer",
        (*C_REQUESTED, C_TERMINATE, refused(C_AGREEMENT), State(N, "TERMINATED")),
    ),
    Scenario(
        "CN_C:03-04",
        "offer after FINALIZED is refused",
        "consumer",
        (*C_FINALIZED, refused(C_OFFER), State(N, "FINALIZED")),
    ),
    Scenario(
        "CN_C:03-05",
        "agreement in OFFERED (not accepted) is refused",
        "consumer",
        (*C_OFFERED, refused(C_AGREEMENT), State(N, "OFFERED")),
    ),
    Scenario(
        "CN_C:03-06",
        "termination after FINALIZED is refused",
        "consumer",
        (*C_FINALIZED, refused(C_TERMINATE), State(N, "FINALIZED")),
    ),
    Scenario("TP_C:01-01", "consumer requests, provider starts (pull data address)", "consumer", C_STARTED),
    Scenario("TP_C:01-02", "started, provider completes", "consumer", (*C_STARTED, *C_COMPLETED)),
    Scenario(
        "TP_C:01-03",
        "started, provider suspends, restarts and completes",
        "consumer",
        (*C_STARTED, *C_SUSPENDED, *C_RESTARTED, *C_COMPLETED),
    ),
    Scenario("TP_C:01-04", "started, provider terminates", "consumer", (*C_STARTED, *C_ENDED)),
    Scenario(
        "TP_C:01-05",
        "provider refuses the request (terminates in REQUESTED)",
        "consumer",
        (*C_TRANSFER_REQUESTED, *C_ENDED),
    ),
    Scenario("TP_C:01-06", "suspended, provider terminates", "consumer", (*C_STARTED, *C_SUSPENDED, *C_ENDED)),
    Scenario("TP_C:02-01", "consumer completes", "consumer", (*C_STARTED, *OPERATOR_COMPLETES)),
    Scenario("TP_C:02-02", "consumer suspends and resumes", "consumer", (*C_STARTED, *OPERATOR_SUSPENDS_AND_RESUMES)),
    Scenario("TP_C:02-03", "consumer terminates", "consumer", (*C_STARTED, *OPERATOR_ENDS)),
    Scenario(
        "TP_C:02-04",
        "consumer suspends, provider restarts",
        "consumer",
        (*C_STARTED, *OPERATOR_SUSPENDS, *C_RESTARTED),
    ),
    Scenario("TP_C:03-01", "an unknown transfer is 404", "consumer", (Unknown(T),)),
    Scenario(
        "TP_C:03-02",
        "completion while REQUESTED is refused",
        "consumer",
        (*C_TRANSFER_REQUESTED, refused(C_COMPLETE), State(T, "REQUESTED")),
    ),
    Scenario(
        "TP_C:03-03",
        "completion while SUSPENDED is refused",
        "consumer",
        (*C_STARTED, *C_SUSPENDED, refused(C_COMPLETE), State(T, "SUSPENDED")),
    ),
    Scenario(
        "TP_C:03-04",
        "start after COMPLETED is refused",
        "consumer",
        (*C_STARTED, C_COMPLETE, refused(C_START), State(T, "COMPLETED")),
    ),
    Scenario(
        "TP_C:03-05",
        "suspension after TERMINATED is refused",
        "consumer",
        (*C_STARTED, C_END, refused(C_SUSPEND), State(T, "TERMINATED")),
    ),
    Scenario(
        "TP_C:03-06",
        "a pull start without a data address is refused",
        "consumer",
        (*C_TRANSFER_REQUESTED, refused(C_BARE_START), State(T, "REQUESTED")),
    ),
]

METADATA = [
    Scenario("MET:01-01", "version metadata at /.well-known/dspace-version, no token needed", "any", (Version(),)),
    Scenario(
        "CAT:01-01",
        "catalog request answers a valid Catalog naming the participant",
        "provider",
        (Send(m.catalog_request, "/catalog/request", 200, answer="Catalog"),),
    ),
    Scenario("CAT:01-02", "a dataset of the catalog answers a valid Dataset", "provider", (Dataset(),)),
    Scenario("CAT:01-03", "an unknown dataset is 404 with a CatalogError", "provider", (Dataset(known=False),)),
]

SCENARIOS: tuple[Scenario, ...] = (*METADATA, *PROVIDER, *CONSUMER)
