"""Never stuck: a negotiation or transfer whose counter-party does not answer in time is terminated.

A background sweep reads the database (so it survives restarts), takes a bounded batch of overdue
processes each pass and ends each one in its own transaction, with a termination message that says
why. One record that cannot be ended is set aside for this run; it never stops the others.

Overdue: a negotiation not final, not waiting for our own operator, unchanged for `negotiation_deadline`
seconds; a transfer we requested that the provider has not started within `transfer_deadline`.
"""

import asyncio
import logging
from datetime import timedelta

from sqlmodel import col, select

from connector import negotiations, processes, timeline, transfers
from connector.negotiations import Negotiation
from connector.processes import Process
from connector.runtime import Runtime
from connector.transfers import Transfer
from tessera.clock import utcnow

logger = logging.getLogger("connector.deadlines")
BATCH = 50  # processes ended per pass and kind, at most
LONGEST_PAUSE = 30.0  # seconds between passes, at most
LEASE = "sweep:deadlines"


class DeadlineSweeper:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._set_aside: set[str] = set()  # processes that could not be ended in this run

    @property
    def pause(self) -> float:
        config = self.runtime.config
        return max(0.05, min(LONGEST_PAUSE, config.negotiation_deadline / 4, config.transfer_deadline / 4))

    async def run(self) -> None:
        while True:
            try:
                async with self.runtime.leases.holding(LEASE) as held:  # one replica per pass
                    if held:
                        await self.sweep()
            except Exception:  # the sweep must outlive any failure; the next pass tries again
                logger.exception("deadline sweep failed")
            await asyncio.sleep(self.pause)

    async def sweep(self) -> int:
        """End every overdue process found in this pass; returns how many were ended."""
        config = self.runtime.config
        ended = 0
        for model, deadline in ((Negotiation, config.negotiation_deadline), (Transfer, config.transfer_deadline)):
            for pid in await self._overdue(model, deadline):
                ended += await self._end_safely(model, pid, deadline)
        return ended

    async def _overdue(self, model: type[Negotiation] | type[Transfer], deadline: float) -> list[str]:
        cutoff = utcnow() - timedelta(seconds=deadline)
        query = select(model.id).where(col(model.updated_at) < cutoff, col(model.id).not_in(self._set_aside))
        if model is Negotiation:
            query = query.where(col(Negotiation.state).not_in(("FINALIZED", "TERMINATED")))
            query = query.where(col(Negotiation.waiting).is_(None))
        else:
            query = query.where(Transfer.role == "consumer", Transfer.state == "REQUESTED")
        async with self.runtime.db.session() as session:
            return list(await session.exec(query.order_by(col(model.updated_at)).limit(BATCH)))

    async def _end_safely(self, model: type[Negotiation] | type[Transfer], pid: str, deadline: float) -> int:
        try:
            return await self._end(model, pid, deadline)
        except Exception:  # one bad record must not stop the sweep: set it aside, end it locally if we can
            logger.exception("could not end overdue %s %s", model.noun, pid)
            self._set_aside.add(pid)
            try:
                await processes.abandon(self.runtime, model, pid, f"no answer within {deadline:g} seconds")
            except Exception:
                logger.exception("could not abandon %s %s either", model.noun, pid)
            return 0

    async def _end(self, model: type[Negotiation] | type[Transfer], pid: str, deadline: float) -> int:
        async with self.runtime.transaction() as session:
            process: Process | None = await session.get(model, pid)
            cutoff = utcnow() - timedelta(seconds=deadline)
            if process is None or process.final or process.updated_at >= cutoff:
                return 0  # it moved since the query
            reason = _reason(process, deadline)
            if isinstance(process, Negotiation):
                if process.waiting is not None:
                    return 0
                timeline.decided(session, process.id, "deadline", "terminate", [reason])
                await negotiations.terminate(session, self.runtime, process, [reason], code="deadline")
            else:
                assert isinstance(process, Transfer)
                timeline.decided(session, process.id, "deadline", "terminate", [reason])
                await transfers.announce(session, self.runtime, process, "TERMINATED", reason=reason)
        logger.info("%s %s terminated: %s", model.noun, pid, reason)
        return 1


def _reason(process: Process, deadline: float) -> str:
    return (
        f"no answer from {process.counterparty_id} within {deadline:g} seconds (the {process.noun} was {process.state})"
    )
