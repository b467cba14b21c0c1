"""Running scenarios against a connector: discovery, one run per scenario, one result per scenario.

A scenario fails when a step fails or when any message the connector under test sent to the harness
broke its schema or came without a valid access token; it is skipped when it needs the connector's
management API and none was given.
"""

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx

from connector.selftest.messages import OWN_OFFER
from connector.selftest.peer import Peer
from connector.selftest.scenarios import SCENARIOS, Scenario
from connector.selftest.steps import Role, Run, StepFailed, Target
from tessera import dsp
from tessera.errors import TesseraError
from tessera.ids import new_id

Outcome = Literal["passed", "failed", "skipped"]
DEFAULT_WITHIN = 10.0  # seconds to wait for a message or a state


@dataclass(frozen=True)
class ScenarioResult:
    id: str
    title: str
    role: Role
    outcome: Outcome
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def select(pattern: str | None, scenarios: Iterable[Scenario] = SCENARIOS) -> list[Scenario]:
    """Scenarios whose id matches a glob (`CN:*`, `TP_C:03-*`) or starts with `pattern`."""
    if not pattern:
        return list(scenarios)
    return [s for s in scenarios if fnmatch.fnmatchcase(s.id, pattern) or s.id.startswith(pattern)]


async def discover(peer: Peer, target: Target) -> None:
    """The first dataset of the target's catalog that has an offer, and that offer (for provider scenarios)."""
    url = target.dsp_url + "/catalog/request"
    try:
        response = await peer.post(url, dsp.message("CatalogRequestMessage"), target.participant_id)
        catalog = response.json() if response.status_code == 200 else {}
    except (TesseraError, httpx.HTTPError, ValueError):
        return  # the scenarios that need the catalog fail and say why
    for dataset in _listed(catalog.get("dataset")):
        offers = [o for o in _listed(dataset.get("hasPolicy")) if not str(o.get("@id")).startswith(OWN_OFFER)]
        if offers and isinstance(dataset.get("@id"), str):
            target.dataset, target.offer = dataset["@id"], offers[0]
            return


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


async def participant_id_of(http: httpx.AsyncClient, dsp_url: str) -> str | None:
    """The participant id from a catalog that answers without a token (Tessera's does not)."""
    try:
        response = await http.post(dsp_url.rstrip("/") + "/catalog/request", json=dsp.message("CatalogRequestMessage"))
        return response.json().get("participantId") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


async def run_scenario(
    scenario: Scenario, peer: Peer, target: Target, *, within: float = DEFAULT_WITHIN
) -> ScenarioResult:
    def result(outcome: Outcome, detail: str = "") -> ScenarioResult:
        return ScenarioResult(scenario.id, scenario.title, scenario.role, outcome, detail)

    if scenario.needs_management and target.management is None:
        return result("skipped", "needs the connector's management API (--management-url, --api-key)")
    peer.reset()
    run = Run(peer, target, scenario.role, within)
    if scenario.role == "provider":
        run.vars["consumerPid"] = new_id()
        if target.dataset and target.offer:
            run.vars["dataset"] = target.dataset
            run.vars["offer"] = target.offer
    for number, step in enumerate(scenario.steps, 1):
        try:
            await step(run)
        except (StepFailed, TesseraError, httpx.HTTPError, KeyError) as exc:
            return result("failed", f"step {number} ({step}): {_describe(exc)}")
    problems = [f"{r.kind} to {r.path}: {p}" for r in peer.inbox for p in r.problems]
    if problems:
        return result("failed", "; ".join(problems[:3]))
    return result("passed")


def _describe(exc: Exception) -> str:
    if isinstance(exc, TesseraError):
        return exc.detail
    if isinstance(exc, KeyError):
        return f"nothing known yet about {exc.args[0]}"
    return str(exc) or type(exc).__name__


async def run_all(
    scenarios: Iterable[Scenario],
    peer: Peer,
    target: Target,
    *,
    within: float = DEFAULT_WITHIN,
    on_result: Callable[[ScenarioResult], None] | None = None,
) -> list[ScenarioResult]:
    """Run scenarios one after another against one target; `on_result` hears of each as it ends."""
    peer.sender = target.participant_id
    await discover(peer, target)
    results = []
    for scenario in scenarios:
        outcome = await run_scenario(scenario, peer, target, within=within)
        results.append(outcome)
        if on_result:
            on_result(outcome)
    return results
