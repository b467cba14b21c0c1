"""The connector's Prometheus metrics: what one process counts (docs/metrics.md "Monitor").

Counters and histograms are updated where things happen: usage decisions by outcome and reason class
(`connector.usage`), bytes sent (its metering), and, read from the parts that keep them at scrape time,
outbox delivery outcomes, access-token cache lookups and JWKS fetches. The gauges (negotiations,
transfers and outbox messages by state) are filled from the database when `/metrics` is scraped
(`connector.monitoring`): with several replicas on one database they are cluster-wide, the counters
are per replica.
"""

import re
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from connector.outbox import Outbox
from tessera.identity import JwksCache, TokenClient
from tessera.metrics import request_histogram
from tessera.policy import Decision
from tessera.policy.base import NO_RULE_ALLOWED

NAMESPACE = "tessera_connector"
MAX_REASONS = 64  # distinct reason classes one process labels; later ones count as "other"
# A reason's class: the words before its ":" ("time interval", "cross_border.destinations"), else its first
# word ("purpose" of 'purpose "ads" is not allowed', "grades.core" of 'grades.core = "hidden": …').
_LABELLED = re.compile(r"([a-z][a-z0-9_.]*(?: [a-z][a-z0-9_]*){0,3}):")
_FIRST_WORD = re.compile(r"[a-z][a-z0-9_.]*")


class ConnectorMetrics:
    """One app's registry and the metrics the code updates as things happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = request_histogram(self.registry, NAMESPACE)
        self.decisions = Counter(
            f"{NAMESPACE}_usage_decisions",
            "Usage decisions on pulls, pushes and queries by outcome (allow|deny) and the first reason's class.",
            ("outcome", "reason"),
            registry=self.registry,
        )
        self.bytes_sent = Counter(
            f"{NAMESPACE}_bytes_sent", "Data bytes sent to consumers, as metered per use.", registry=self.registry
        )
        self.processes = Gauge(
            f"{NAMESPACE}_processes",
            "Negotiations and transfers in the database by kind, role and state (cluster-wide).",
            ("kind", "role", "state"),
            registry=self.registry,
        )
        self.outbox = Gauge(
            f"{NAMESPACE}_outbox_messages",
            "Outbox messages in the database by status: pending, delivered, failed (cluster-wide).",
            ("status",),
            registry=self.registry,
        )
        self._reasons: set[str] = set()
        self._parts: Collector | None = None

    def decided(self, decision: Decision) -> None:
        outcome = "allow" if decision.allow else "deny"
        reason = "none" if decision.allow else self._reason_class(decision.reasons[0] if decision.reasons else "")
        self.decisions.labels(outcome, reason).inc()

    def _reason_class(self, reason: str) -> str:
        labelled, first = _LABELLED.match(reason), _FIRST_WORD.match(reason)
        if reason == NO_RULE_ALLOWED:
            name = "no rule allowed"
        else:
            name = labelled.group(1) if labelled else first.group(0) if first else "other"
        if name not in self._reasons and len(self._reasons) >= MAX_REASONS:
            return "other"
        self._reasons.add(name)
        return name

    def watch(self, tokens: TokenClient, jwks: JwksCache, outbox: Outbox) -> None:
        """Export the counts these parts keep (a restarted app's new parts replace the old ones)."""
        if self._parts is not None:
            self.registry.unregister(self._parts)
        self._parts = _PartsCollector(lambda: tokens.cache, lambda: jwks.fetches, lambda: outbox.outcomes)
        self.registry.register(self._parts)


class _PartsCollector(Collector):
    def __init__(
        self, tokens: Callable[[], Tally[str]], jwks: Callable[[], int], outbox: Callable[[], Tally[str]]
    ) -> None:
        self.tokens, self.jwks, self.outbox = tokens, jwks, outbox

    def collect(self) -> Iterator[Metric]:
        yield _counter("token_cache", "Access-token cache lookups by result (hit|miss).", "result", self.tokens())
        fetches = CounterMetricFamily(f"{NAMESPACE}_jwks_fetches", "Fetches of the authority's JWKS.")
        fetches.add_metric([], self.jwks())
        yield fetches
        yield _counter("outbox_deliveries", "Outbox delivery attempts by outcome.", "outcome", self.outbox())


def _counter(name: str, documentation: str, label: str, counts: Tally[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family
