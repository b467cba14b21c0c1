"""The crawler: reads each registered connector's DSP catalog and keeps liveness.

Right after a registration, then every `crawl_interval` seconds, the broker asks the connector for its
catalog with an access token it mints for itself (issuer and subject: the broker's URL, audience: the
participant). It sends the last `ETag` as `If-None-Match`, so an unchanged catalog costs one 304.

Liveness follows from the answers: a catalog (or a push) makes an entry ONLINE and sets `last_seen_at`; a
failed crawl makes it OFFLINE, and DEAD once nothing was seen for `dead_after` seconds. A DEAD entry leaves
search `hide_dead_after` seconds later; it comes back as soon as the connector answers or pushes again.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, TypeGuard

import httpx
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from broker import entries, events
from broker.authority import Participant
from broker.config import BrokerConfig
from broker.entries import DEAD, OFFLINE, ONLINE, Merge, Offering, Registration
from broker.metadata import EMPTY, CatalogMetadata, Metadata
from broker.search import SearchBackend
from tessera.clock import aware, utcnow
from tessera.errors import TesseraError
from tessera.identity import ACCESS_TOKEN_TYPE, SigningKey
from tessera.store import Database

logger = logging.getLogger("broker.crawler")

CATALOG_REQUEST = {"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "CatalogRequestMessage"}
MAX_CATALOG_BYTES = 16 * 1024 * 1024
CONCURRENCY = 8
BATCH = 64
MAX_BATCHES = 100


class CrawlFailed(Exception):
    """A catalog could not be fetched or read; the message goes to the status page."""


class Crawler:
    """Crawls due connectors in a background task started by the app's lifespan.

    ```python
    crawler = Crawler(db, search, config, signer, http)
    task = asyncio.create_task(crawler.run())
    crawler.wake()  # after a registration: crawl it now
    ```
    """

    def __init__(
        self, db: Database, search: SearchBackend, config: BrokerConfig, signer: SigningKey, http: httpx.AsyncClient
    ) -> None:
        self._db = db
        self._search = search
        self._config = config
        self._signer = signer
        self._http = http
        self._wake = asyncio.Event()
        self._gate = asyncio.Semaphore(CONCURRENCY)
        self.rounds = 0
        intervals = [config.crawl_interval / 4, 1.0]
        if config.hide_dead_after:
            intervals.append(config.hide_dead_after / 4)
        self._tick = max(0.05, min(intervals))

    def wake(self, _participant_id: str | None = None) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any one bad round
                logger.exception("crawl round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._tick)
            self._wake.clear()

    async def round(self) -> None:
        """Crawl every entry that is due, then let long-dead entries leave search."""
        for _ in range(MAX_BATCHES):  # bounded, so a zero interval cannot keep one round going for ever
            due = await self._due()
            await asyncio.gather(*(self._crawl_guarded(pid, endpoint, etag) for pid, endpoint, etag in due))
            if len(due) < BATCH:
                break
        await self._hide_dead()
        self.rounds += 1

    async def _due(self) -> list[tuple[str, str, str]]:
        statement = (
            select(Registration.participant_id, Registration.endpoint, Registration.crawl_etag)
            .where(col(Registration.next_crawl_at) <= utcnow())
            .order_by(col(Registration.next_crawl_at))
            .limit(BATCH)
        )
        async with self._db.session() as session:
            rows = (await session.exec(statement)).all()
        return [(participant_id, endpoint, etag) for participant_id, endpoint, etag in rows]

    async def _crawl_guarded(self, participant_id: str, endpoint: str, etag: str) -> None:
        """One entry, on its own: whatever goes wrong with it is recorded on it and stops no other."""
        async with self._gate:
            try:
                await self._crawl(participant_id, endpoint, etag)
            except Exception as exc:  # a bug or a value no check caught: this entry fails, the round goes on
                logger.exception("crawl of %s failed unexpectedly", participant_id)
                await self._failed_safely(participant_id, f"crawl failed: {type(exc).__name__}: {exc}")

    async def _crawl(self, participant_id: str, endpoint: str, etag: str) -> None:
        try:
            catalog, new_etag = await self.fetch(participant_id, endpoint, etag)
        except CrawlFailed as exc:
            logger.info("crawl of %s failed: %s", participant_id, exc)
            await self._failed(participant_id, str(exc))
            return
        try:
            await self._succeeded(participant_id, catalog, new_etag)
        except TesseraError as exc:  # e.g. a catalog over the offering quota: reachable, but not taken
            logger.warning("catalog of %s refused: %s", participant_id, exc.detail)
            await self._failed(participant_id, f"catalog refused: {exc.detail}", reachable=True)

    async def _failed_safely(self, participant_id: str, error: str) -> None:
        try:
            await self._failed(participant_id, error)
        except Exception:  # not even the failure could be recorded: the entry is tried again next round
            logger.exception("could not record the failed crawl of %s", participant_id)

    async def fetch(self, participant_id: str, endpoint: str, etag: str) -> tuple[dict[str, Any] | None, str]:
        """The connector's catalog (None if unchanged since `etag`) and its new ETag."""
        headers = {"Authorization": f"Bearer {self._token(participant_id)}"}
        if etag:
            headers["If-None-Match"] = etag
        url = endpoint.rstrip("/") + "/catalog/request"
        try:
            response = await self._http.post(
                url, json=CATALOG_REQUEST, headers=headers, timeout=self._config.crawl_timeout
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:  # stored before addresses were checked
            raise CrawlFailed(f"bad address {endpoint!r}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise CrawlFailed(f"unreachable: {type(exc).__name__} {exc}".strip()) from exc
        if response.status_code == 304:
            return None, etag
        if response.status_code != 200:
            raise CrawlFailed(f"catalog request answered {response.status_code}: {response.text[:200]}")
        if len(response.content) > MAX_CATALOG_BYTES:
            raise CrawlFailed(f"catalog larger than {MAX_CATALOG_BYTES} bytes")
        try:
            body = response.json()
        except ValueError as exc:
            raise CrawlFailed(f"catalog is not JSON: {exc}") from exc
        if not isinstance(body, dict) or body.get("@type") != "Catalog":
            raise CrawlFailed("answer is not a DSP Catalog")
        return body, response.headers.get("etag", "")

    def _token(self, participant_id: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self._config.url,
            "sub": self._config.url,
            "aud": participant_id,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            "org": "broker",
            "region": "",
            "security_profile": "broker",
        }
        return self._signer.sign_jwt(claims, typ=ACCESS_TOKEN_TYPE)

    async def _succeeded(self, participant_id: str, catalog: dict[str, Any] | None, etag: str) -> None:
        """Record a crawl's answer: the catalog, or None when it is unchanged since `etag`."""
        offerings = None if catalog is None else offerings_in(catalog)
        moment = utcnow()
        async with self._db.transaction() as session:
            record = await session.get(Registration, participant_id)
            if record is None:
                return  # unregistered while we were crawling
            connection = await session.connection()
            if offerings is not None:
                context = Merge(
                    participant_id=participant_id,
                    source="crawl",
                    actor="crawler",
                    region=await self._region(session, participant_id),
                    state=ONLINE,
                    notice_period=self._config.notice_period,
                    max_offerings=self._config.max_offerings,
                    datasets=dataset_ids(catalog or {}),
                )
                # merge takes only the catalog's fields from a crawl; EMPTY fills out the record's shape.
                incoming: dict[str, Metadata] = {oid: {**EMPTY, **found} for oid, found in offerings.items()}
                outcome = await entries.merge(connection, self._search, context, incoming)
                record.offerings = len(outcome.codes)
                if outcome.changed_anything:
                    record.changed_at = moment
                    await events.record(
                        connection,
                        [events.event("crawler", "catalog.changed", participant_id, detail=outcome.summary())],
                    )
            await self._set_state(session, record, ONLINE)
            record.last_seen_at = record.crawled_at = moment
            record.crawl_status = "200" if offerings is not None else "304"
            record.crawl_error, record.crawl_failures = "", 0
            record.crawl_etag = etag
            record.next_crawl_at = moment + timedelta(seconds=self._config.crawl_interval)
            session.add(record)

    async def _failed(self, participant_id: str, error: str, *, reachable: bool = False) -> None:
        moment = utcnow()
        async with self._db.transaction() as session:
            record = await session.get(Registration, participant_id)
            if record is None:
                return
            if reachable:
                record.last_seen_at = moment
                await self._set_state(session, record, ONLINE)
            else:
                silent = (moment - aware(record.last_seen_at)).total_seconds()
                await self._set_state(session, record, DEAD if silent >= self._config.dead_after else OFFLINE)
            record.crawled_at, record.crawl_status, record.crawl_error = moment, "error", error[:500]
            record.crawl_failures += 1
            record.next_crawl_at = moment + timedelta(seconds=self._config.crawl_interval)
            session.add(record)

    async def _set_state(self, session: AsyncSession, record: Registration, state: str) -> None:
        if record.state == state:
            return
        connection = await session.connection()
        listed = not (state == DEAD and self._config.hide_dead_after <= 0)
        await entries.set_state(connection, record.participant_id, state=state, listed=listed)
        change = {"old": record.state, "new": state}
        event = events.event("crawler", "liveness.changed", record.participant_id, detail=change)
        await events.record(connection, [event])
        logger.info("%s is now %s (was %s)", record.participant_id, state, record.state)
        record.state, record.state_changed_at = state, utcnow()

    async def _region(self, session: AsyncSession, participant_id: str) -> str:
        participant = await session.get(Participant, participant_id)
        return participant.region if participant else ""

    async def _hide_dead(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self._config.hide_dead_after)
        dead = select(Registration.participant_id).where(
            col(Registration.state) == DEAD, col(Registration.state_changed_at) <= cutoff
        )
        statement = (
            update(Offering).where(col(Offering.listed), col(Offering.participant_id).in_(dead)).values(listed=False)
        )
        async with self._db.transaction() as session:
            await session.exec(statement)


def offerings_in(catalog: dict[str, Any]) -> dict[str, CatalogMetadata]:
    """Offering id -> metadata for every ODRL offer in a DSP catalog (one dataset may carry several)."""
    return {offer_id: _metadata(dataset) for offer_id, dataset in _offers(catalog)}


def dataset_ids(catalog: dict[str, Any]) -> dict[str, str]:
    """Offering id -> the `@id` of the dataset that holds the offer: what a negotiation names as its target."""
    named = {offer_id: dataset.get("@id") for offer_id, dataset in _offers(catalog)}
    # A NUL is left out: no text column on PostgreSQL can store it.
    return {offer_id: found for offer_id, found in named.items() if _an_id(found) and "\x00" not in found}


def _offers(catalog: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    datasets = catalog.get("dataset") or []
    for dataset in datasets if isinstance(datasets, list) else [datasets]:
        if not isinstance(dataset, dict):
            continue
        policies = dataset.get("hasPolicy") or []
        for policy in policies if isinstance(policies, list) else [policies]:
            offer_id = policy.get("@id") if isinstance(policy, dict) else None
            if _an_id(offer_id):
                yield offer_id, dataset


def _an_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= 256


def _metadata(dataset: dict[str, Any]) -> CatalogMetadata:
    title = _text(dataset.get("title")) or _text(dataset.get("@id")) or "untitled"
    keywords = dataset.get("keyword") or []
    if not isinstance(keywords, list):
        keywords = [keywords]
    return {
        "title": title[:512],
        "description": _text(dataset.get("description"))[:8192],
        "keywords": [_text(k)[:64] for k in keywords if _text(k)][:64],
    }


def _text(value: object) -> str:
    # DCAT values may come as a plain string or as a JSON-LD value object {"@value": …}.
    if isinstance(value, dict):
        value = value.get("@value")
    if isinstance(value, list) and value:
        return _text(value[0])
    # A NUL is dropped: no text column on PostgreSQL can store it.
    return value.replace("\x00", "") if isinstance(value, str) else ""
