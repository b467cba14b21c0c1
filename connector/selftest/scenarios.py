"""The scenario table: the TCK's areas, every legal path of the DSP 2025-1 state machines and the
characteristic illegal transitions, named like the TCK (`MET`, `CAT`, `CN`, `CN_C`, `TP`, `TP_C`).

`CN`/`TP`: the connector under test is the provider, the harness the consumer. `CN_C`/`TP_C`: the
connector under test is the consumer (driven by its management API), the harness the provider.
Groups: `01` legal paths, `02` terminations and changes from either side, `03` negative cases.
"""

from dataclasses import dataclass

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

# -- the connector under test as provider -------------------------------------------------------------------

REQUEST = Send(m.contract_request, "/negotiations/request", 201, state="REQUESTED")
AGREED = (REQUEST, Receive("ContractAgreementMessage"), State(N, "AGREED"))
VERIFY = Send(m.verification, P_NEG + "/agreement/verification")
FINALIZE = (VERIFY, Receive("ContractNegotiationEventMessage", event="FINALIZED"), State(N, "FINALIZED"))
LIMITED = (Operator(actions.publish_limited_offer), REQUEST, Receive("ContractOfferMessage"), State(N, "OFFERED"))
MANUAL = (Operator(actions.publish_manual_offer), REQUEST, State(N, "REQUESTED"))
P_TERMINATE = Send(m.negotiation_termination, P_NEG + "/termination")

STARTED = (
    *AGREED,
    *FINALIZE,
    NewProcess(),
    Send(m.transfer_request, "/transfers/request", 201, state="REQUESTED"),
    Receive("TransferStartMessage", has="dataAddress"),
    State(T, "STARTED"),
)
P_COMPLETE = Send(m.transfer_completion, P_TRANSFER + "/completion")
P_SUSPEND = Send(m.transfer_suspension, P_TRANSFER + "/suspension")
P_RESUME = Send(m.bare_transfer_start, P_TRANSFER + "/start")
P_END = Send(m.transfer_termination, P_TRANSFER + "/termination")

PROVIDER = [
    Scenario(
        "CN:01-01", "request, provider agrees, consumer verifies, provider finalizes", "provider", (*AGREED, *FINALIZE)
    ),
    Scenario(
        "CN:01-02",
        "request beyond the offer, provider counter-offers, consumer accepts, finalized",
        "provider",
        (
            *LIMITED,
            Send(m.accepted, P_NEG + "/events"),
            Receive("ContractAgreementMessage"),
            State(N, "AGREED"),
            *FINALIZE,
        ),
    ),
    Scenario(
        "CN:01-03",
        "provider counter-offers, consumer counter-requests within it, finalized",
        "provider",
        (
            *LIMITED,
            Send(m.counter_request, P_NEG + "/request"),
            Receive("ContractAgreementMessage"),
            State(N, "AGREED"),
            *FINALIZE,
        ),
    ),
    Scenario(
        "CN:01-04",
        "request waits for the provider's operator, who agrees; finalized",
        "provider",
        (*MANUAL, Operator(actions.accept), Receive("ContractAgreementMessage"), State(N, "AGREED"), *FINALIZE),
    ),
    Scenario(
        "CN:01-05",
        "a repeated initial request is answered as the first",
        "provider",
        (REQUEST, REQUEST, Receive("ContractAgreementMessage"), *FINALIZE),
    ),
    Scenario(
        "CN:02-01", "consumer terminates in REQUESTED", "provider", (*MANUAL, P_TERMINATE, State(N, "TERMINATED"))
    ),
    Scenario("CN:02-02", "consumer terminates in OFFERED", "provider", (*LIMITED, P_TERMINATE, State(N, "TERMINATED"))),
    Scenario("CN:02-03", "consumer terminates in AGREED", "provider", (*AGREED, P_TERMINATE, State(N, "TERMINATED"))),
    Scenario(
        "CN:02-04",
        "provider terminates in REQUESTED",
        "provider",
        (
            *MANUAL,
            Operator(actions.terminate),
            Receive("ContractNegotiationTerminationMessage"),
            State(N, "TERMINATED"),
        ),
    ),
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
        (*LIMITED, Send(m.verification, P_NEG + "/agreement/verification", 400), State(N, "OFFERED")),
    ),
    Scenario(
        "CN:03-03",
        "ACCEPTED event in AGREED is refused",
        "provider",
        (*AGREED, Send(m.accepted, P_NEG + "/events", 400), State(N, "AGREED")),
    ),
    Scenario(
        "CN:03-04",
        "termination after FINALIZED is refused",
        "provider",
        (*AGREED, *FINALIZE, Send(m.negotiation_termination, P_NEG + "/termination", 400), State(N, "FINALIZED")),
    ),
    Scenario(
        "CN:03-05",
        "verification after TERMINATED is refused",
        "provider",
        (*AGREED, P_TERMINATE, Send(m.verification, P_NEG + "/agreement/verification", 400), State(N, "TERMINATED")),
    ),
    Scenario("TP:01-01", "request under the agreement, provider starts (pull data address)", "provider", STARTED),
    Scenario("TP:01-02", "started, consumer completes", "provider", (*STARTED, P_COMPLETE, State(T, "COMPLETED"))),
    Scenario(
        "TP:01-03",
        "started, consumer suspends, resumes and completes",
        "provider",
        (*STARTED, P_SUSPEND, State(T, "SUSPENDED"), P_RESUME, State(T, "STARTED"), P_COMPLETE, State(T, "COMPLETED")),
    ),
    Scenario("TP:01-04", "started, consumer terminates", "provider", (*STARTED, P_END, State(T, "TERMINATED"))),
    Scenario(
        "TP:01-05",
        "a repeated transfer request is answered as the first",
        "provider",
        (*STARTED, Send(m.transfer_request, "/transfers/request", 201, state="REQUESTED"), State(T, "STARTED")),
    ),
    Scenario(
        "TP:01-06",
        "consumer suspends and resumes twice (same messages again)",
        "provider",
        (
            *STARTED,
            P_SUSPEND,
            State(T, "SUSPENDED"),
            P_RESUME,
            State(T, "STARTED"),
            P_SUSPEND,
            State(T, "SUSPENDED"),
            P_RESUME,
            State(T, "STARTED"),
        ),
    ),
    Scenario(
        "TP:02-01",
        "provider suspends and resumes",
        "provider",
        (
            *STARTED,
            Operator(actions.suspend_transfer),
            Receive("TransferSuspensionMessage"),
            State(T, "SUSPENDED"),
            Operator(actions.resume_transfer),
            Receive("TransferStartMessage"),
            State(T, "STARTED"),
        ),
    ),
    Scenario(
        "TP:02-02",
        "provider completes",
        "provider",
        (*STARTED, Operator(actions.complete_transfer), Receive("TransferCompletionMessage"), State(T, "COMPLETED")),
    ),
    Scenario(
        "TP:02-03",
        "provider terminates",
        "provider",
        (*STARTED, Operator(actions.terminate_transfer), Receive("TransferTerminationMessage"), State(T, "TERMINATED")),
    ),
    Scenario(
        "TP:02-04",
        "provider suspends, consumer resumes",
        "provider",
        (
            *STARTED,
            Operator(actions.suspend_transfer),
            Receive("TransferSuspensionMessage"),
            P_RESUME,
            State(T, "STARTED"),
        ),
    ),
    Scenario("TP:03-01", "an unknown transfer is 404", "provider", (Unknown(T),)),
    Scenario(
        "TP:03-02",
        "a request under an unknown agreement is refused",
        "provider",
        (Send(m.transfer_request, "/transfers/request", 400),),
    ),
    Scenario(
        "TP:03-03",
        "completion while SUSPENDED is refused",
        "provider",
        (
            *STARTED,
            P_SUSPEND,
            State(T, "SUSPENDED"),
            Send(m.transfer_completion, P_TRANSFER + "/completion", 400),
            State(T, "SUSPENDED"),
        ),
    ),
    Scenario(
        "TP:03-04",
        "completion after TERMINATED is refused",
        "provider",
        (*STARTED, P_END, Send(m.transfer_completion, P_TRANSFER + "/completion", 400), State(T, "TERMINATED")),
    ),
    Scenario(
        "TP:03-05",
        "suspension after COMPLETED is refused",
        "provider",
        (*STARTED, P_COMPLETE, Send(m.transfer_suspension, P_TRANSFER + "/suspension", 400), State(T, "COMPLETED")),
    ),
    Scenario(
        "TP:03-06",
        "start after COMPLETED is refused",
        "provider",
        (*STARTED, P_COMPLETE, Send(m.bare_transfer_start, P_TRANSFER + "/start", 400), State(T, "COMPLETED")),
    ),
]

# -- the connector under test as consumer -------------------------------------------------------------------

C_REQUESTED = (Operator(actions.negotiate), Receive("ContractRequestMessage"), State(N, "REQUESTED"))
C_OFFERED = (*C_REQUESTED, Send(m.contract_offer, C_NEG + "/offers"), State(N, "OFFERED"))
C_ACCEPTED = (
    *C_OFFERED,
    Operator(actions.accept),
    Receive("ContractNegotiationEventMessage", event="ACCEPTED"),
    State(N, "ACCEPTED"),
)
C_AGREE = (
    Send(m.agreement, C_NEG + "/agreement"),
    Receive("ContractAgreementVerificationMessage"),
    State(N, "VERIFIED"),
)
C_FINALIZE = (*C_AGREE, Send(m.finalized, C_NEG + "/events"), State(N, "FINALIZED"))
C_TERMINATE = Send(m.negotiation_termination, C_NEG + "/termination")
C_FINALIZED = (*C_REQUESTED, *C_FINALIZE)

C_TRANSFER_REQUESTED = (
    *C_FINALIZED,
    NewProcess(),
    Operator(actions.transfer),
    Receive("TransferRequestMessage"),
    State(T, "REQUESTED"),
)
C_START = Send(m.transfer_start, C_TRANSFER + "/start")
C_STARTED = (*C_TRANSFER_REQUESTED, C_START, State(T, "STARTED"))
C_COMPLETE = Send(m.transfer_completion, C_TRANSFER + "/completion")
C_SUSPEND = Send(m.transfer_suspension, C_TRANSFER + "/suspension")
C_END = Send(m.transfer_termination, C_TRANSFER + "/termination")

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
            Operator(actions.accept),
            Receive("ContractNegotiationEventMessage", event="ACCEPTED"),
            *C_FINALIZE,
        ),
    ),
    Scenario(
        "CN_C:02-01",
        "provider terminates in REQUESTED",
        "consumer",
        (*C_REQUESTED, C_TERMINATE, State(N, "TERMINATED")),
    ),
    Scenario(
        "CN_C:02-02", "provider terminates in OFFERED", "consumer", (*C_OFFERED, C_TERMINATE, State(N, "TERMINATED"))
    ),
    Scenario(
        "CN_C:02-03", "provider terminates in ACCEPTED", "consumer", (*C_ACCEPTED, C_TERMINATE, State(N, "TERMINATED"))
    ),
    Scenario(
        "CN_C:02-04",
        "provider terminates in VERIFIED",
        "consumer",
        (*C_REQUESTED, *C_AGREE, C_TERMINATE, State(N, "TERMINATED")),
    ),
    Scenario(
        "CN_C:02-05",
        "consumer terminates in REQUESTED",
        "consumer",
        (
            *C_REQUESTED,
            Operator(actions.terminate),
            Receive("ContractNegotiationTerminationMessage"),
            State(N, "TERMINATED"),
        ),
    ),
    Scenario(
        "CN_C:02-06",
        "consumer terminates in OFFERED",
        "consumer",
        (
            *C_OFFERED,
            Operator(actions.terminate),
            Receive("ContractNegotiationTerminationMessage"),
            State(N, "TERMINATED"),
        ),
    ),
    Scenario("CN_C:03-01", "an unknown negotiation is 404", "consumer", (Unknown(N),)),
    Scenario(
        "CN_C:03-02",
        "FINALIZED event in REQUESTED is refused",
        "consumer",
        (*C_REQUESTED, Send(m.finalized, C_NEG + "/events", 400), State(N, "REQUESTED")),
    ),
    Scenario(
        "CN_C:03-03",
        "agreement after TERMINATED is refused",
        "consumer",
        (*C_REQUESTED, C_TERMINATE, Send(m.agreement, C_NEG + "/agreement", 400), State(N, "TERMINATED")),
    ),
    Scenario(
        "CN_C:03-04",
        "offer after FINALIZED is refused",
        "consumer",
        (*C_FINALIZED, Send(m.contract_offer, C_NEG + "/offers", 400), State(N, "FINALIZED")),
    ),
    Scenario(
        "CN_C:03-05",
        "agreement in OFFERED (not accepted) is refused",
        "consumer",
        (*C_OFFERED, Send(m.agreement, C_NEG + "/agreement", 400), State(N, "OFFERED")),
    ),
    Scenario(
        "CN_C:03-06",
        "termination after FINALIZED is refused",
        "consumer",
        (*C_FINALIZED, Send(m.negotiation_termination, C_NEG + "/termination", 400), State(N, "FINALIZED")),
    ),
    Scenario("TP_C:01-01", "consumer requests, provider starts (pull data address)", "consumer", C_STARTED),
    Scenario("TP_C:01-02", "started, provider completes", "consumer", (*C_STARTED, C_COMPLETE, State(T, "COMPLETED"))),
    Scenario(
        "TP_C:01-03",
        "started, provider suspends, restarts and completes",
        "consumer",
        (*C_STARTED, C_SUSPEND, State(T, "SUSPENDED"), C_START, State(T, "STARTED"), C_COMPLETE, State(T, "COMPLETED")),
    ),
    Scenario("TP_C:01-04", "started, provider terminates", "consumer", (*C_STARTED, C_END, State(T, "TERMINATED"))),
    Scenario(
        "TP_C:01-05",
        "provider refuses the request (terminates in REQUESTED)",
        "consumer",
        (*C_TRANSFER_REQUESTED, C_END, State(T, "TERMINATED")),
    ),
    Scenario(
        "TP_C:01-06",
        "suspended, provider terminates",
        "consumer",
        (*C_STARTED, C_SUSPEND, State(T, "SUSPENDED"), C_END, State(T, "TERMINATED")),
    ),
    Scenario(
        "TP_C:02-01",
        "consumer completes",
        "consumer",
        (*C_STARTED, Operator(actions.complete_transfer), Receive("TransferCompletionMessage"), State(T, "COMPLETED")),
    ),
    Scenario(
        "TP_C:02-02",
        "consumer suspends and resumes",
        "consumer",
        (
            *C_STARTED,
            Operator(actions.suspend_transfer),
            Receive("TransferSuspensionMessage"),
            State(T, "SUSPENDED"),
            Operator(actions.resume_transfer),
            Receive("TransferStartMessage"),
            State(T, "STARTED"),
        ),
    ),
    Scenario(
        "TP_C:02-03",
        "consumer terminates",
        "consumer",
        (
            *C_STARTED,
            Operator(actions.terminate_transfer),
            Receive("TransferTerminationMessage"),
            State(T, "TERMINATED"),
        ),
    ),
    Scenario(
        "TP_C:02-04",
        "consumer suspends, provider restarts",
        "consumer",
        (
            *C_STARTED,
            Operator(actions.suspend_transfer),
            Receive("TransferSuspensionMessage"),
            C_START,
            State(T, "STARTED"),
        ),
    ),
    Scenario("TP_C:03-01", "an unknown transfer is 404", "consumer", (Unknown(T),)),
    Scenario(
        "TP_C:03-02",
        "completion while REQUESTED is refused",
        "consumer",
        (*C_TRANSFER_REQUESTED, Send(m.transfer_completion, C_TRANSFER + "/completion", 400), State(T, "REQUESTED")),
    ),
    Scenario(
        "TP_C:03-03",
        "completion while SUSPENDED is refused",
        "consumer",
        (
            *C_STARTED,
            C_SUSPEND,
            State(T, "SUSPENDED"),
            Send(m.transfer_completion, C_TRANSFER + "/completion", 400),
            State(T, "SUSPENDED"),
        ),
    ),
    Scenario(
        "TP_C:03-04",
        "start after COMPLETED is refused",
        "consumer",
        (*C_STARTED, C_COMPLETE, Send(m.transfer_start, C_TRANSFER + "/start", 400), State(T, "COMPLETED")),
    ),
    Scenario(
        "TP_C:03-05",
        "suspension after TERMINATED is refused",
        "consumer",
        (*C_STARTED, C_END, Send(m.transfer_suspension, C_TRANSFER + "/suspension", 400), State(T, "TERMINATED")),
    ),
    Scenario(
        "TP_C:03-06",
        "a pull start without a data address is refused",
        "consumer",
        (*C_TRANSFER_REQUESTED, Send(m.bare_transfer_start, C_TRANSFER + "/start", 400), State(T, "REQUESTED")),
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
