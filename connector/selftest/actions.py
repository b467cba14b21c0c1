"""What the harness asks the connector's operator to do, through Tessera's management API (`/api`).

The TCK drives a connector under test through a trigger hook; for Tessera that hook is its
management API. Provider side: publish offers that make the provider counter, wait for approval or
refuse, and act on negotiations and transfers. Consumer side: start negotiations and transfers
with the harness as provider, and accept, counter, suspend, resume, complete or terminate them.
"""

import asyncio
from urllib.parse import quote

from connector.selftest import messages
from connector.selftest.steps import Process, Run, StepFailed
from tessera.ids import new_id

REFUSE_ALL = "package tessera.selftest.refuse\n\ndefault allow := false\n"


def _own(run: Run, area: Process) -> str:
    return f"/{area}/{quote(run.own_pid, safe='')}"


# -- provider side: offers that make the provider counter, wait or refuse --------------------------------


async def _publish(run: Run, **extra: object) -> None:
    assert run.target.offer is not None
    base = await run.manage("GET", f"/offers/{quote(run.target.offer['@id'], safe='')}")
    offer = await run.manage(
        "POST",
        "/offers",
        {"id": messages.OWN_OFFER + new_id(), "asset_id": base["asset_id"], "usage_policy_id": base["usage_policy_id"]}
        | extra,
    )
    run.vars["offer"] = {"@type": "Offer", "@id": offer["id"], "permission": messages.ALLOW_USE}


async def publish_limited_offer(run: Run) -> None:
    """An offer of at most 2 uses; the harness will ask for 5, so the provider counters."""
    await _publish(run, terms={"uses": 2})
    run.vars["ask"] = messages.uses(5)


async def publish_manual_offer(run: Run) -> None:
    """An offer an operator must approve: the provider stays REQUESTED."""
    await _publish(run, approval="manual")


async def publish_refusing_offer(run: Run) -> None:
    """An offer whose access policy refuses everyone: the provider terminates."""
    policy = await run.manage("POST", "/policies", {"title": "selftest: refuse all", "source": REFUSE_ALL})
    await _publish(run, access_policy_id=policy["id"])


# -- negotiations -----------------------------------------------------------------------------------------


async def negotiate(run: Run) -> None:
    """The connector under test, as consumer, requests an offer from the harness."""
    started = await run.manage(
        "POST",
        "/negotiations",
        {
            "provider_id": run.peer.id,
            "provider_url": run.peer.dsp_url,
            "offer_id": messages.TCK_OFFER,
            "target": messages.TCK_TARGET,
        },
    )
    run.vars["consumerPid"] = started["consumer_pid"]


async def accept(run: Run) -> None:
    await run.manage("POST", _own(run, "negotiations") + "/accept")


async def counter(run: Run) -> None:
    await run.manage("POST", _own(run, "negotiations") + "/counter", {"terms": {"uses": 2}})


async def terminate(run: Run) -> None:
    await _knows_counterpart(run, "negotiations")
    await run.manage("POST", _own(run, "negotiations") + "/terminate", {"reason": "terminated by the operator"})


# -- transfers --------------------------------------------------------------------------------------------


async def transfer(run: Run) -> None:
    """The connector under test, as consumer, requests a transfer under the run's agreement."""
    started = await run.manage("POST", "/transfers", {"agreement_id": run.vars["agreementId"]})
    run.vars["consumerPid"] = started["consumer_pid"]


async def suspend_transfer(run: Run) -> None:
    await _change(run, "suspend")


async def resume_transfer(run: Run) -> None:
    await _change(run, "resume")


async def complete_transfer(run: Run) -> None:
    await _change(run, "complete")


async def terminate_transfer(run: Run) -> None:
    await _change(run, "terminate")


async def _change(run: Run, action: str) -> None:
    await _knows_counterpart(run, "transfers")
    await run.manage("POST", _own(run, "transfers") + "/" + action, {"reason": f"{action} by the operator"})


async def _knows_counterpart(run: Run, area: Process) -> None:
    """Wait until the connector under test has learned the harness's pid, so it can address it."""
    counterpart = "provider_pid" if run.role == "consumer" else "consumer_pid"
    deadline = asyncio.get_running_loop().time() + run.within
    while not (await run.manage("GET", _own(run, area))).get(counterpart):
        if asyncio.get_running_loop().time() > deadline:
            raise StepFailed(f"the connector never learned the harness's {counterpart}")
        await asyncio.sleep(0.05)
