"""Poison isolation: a value from outside that no check caught fails on its own item, with its reason,
and the loop that met it goes on with everything else."""

import json
from pathlib import Path

import pytest
from sqlmodel import select

from connector.outbox import OutboxMessage
from tessera.store import Database
from tessera.urls import check_url
from tests.dataspace import Site, negotiate, publish


async def test_a_message_that_can_never_be_sent_fails_alone_and_the_outbox_goes_on(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    db = await Database.open(consumer.config.database_url)
    try:
        async with db.transaction() as session:  # as if stored before addresses were checked
            body = json.dumps({"@type": "ContractNegotiationTerminationMessage"})
            poison = OutboxMessage(process_id="urn:uuid:p", url="http://127.0.0.1:80a", audience=provider.id, body=body)
            session.add(poison)
        offer = await publish(provider, people_csv)
        assert (await negotiate(consumer, provider, offer))["state"] == "FINALIZED"
        async with db.session() as session:
            (poison,) = await session.exec(select(OutboxMessage).where(OutboxMessage.process_id == "urn:uuid:p"))
    finally:
        await db.close()
    assert poison.status == "failed" and poison.last_error is not None and "bad address" in poison.last_error


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:80a", "http://\ufeffhost.example/", "ftp://host.example/", "http:///path", "http://h:0/"],
)
async def test_a_bad_callback_address_is_refused_where_it_enters(provider: Site, consumer: Site, url: str) -> None:
    answer = await consumer.api.post(
        "/negotiations", json={"provider_id": provider.id, "provider_url": url, "offer_id": "o", "target": "t"}
    )
    assert answer.status_code == 400 and "provider_url" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:80a", "not a valid URL"),
        ("http://\ufeffhost.example/", "spaces or control characters"),
        ("http://exa mple.com/", "spaces or control characters"),
        ("ftp://host.example/", "http or https"),
        ("http:///path", "no host"),
        ("http://[::1]:99999/", "outside 1-65535"),
        ("http://xn--a.example/", "not a valid URL"),
        ("http://h.example/" + "a" * 3000, "longer than"),
    ],
)
def test_check_url_names_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_url(url, "the address")


def test_check_url_takes_real_addresses() -> None:
    for url in ["https://provider.example:8443/dsp", "http://127.0.0.1:8181/dsp", "http://数据.中国/dsp"]:
        assert check_url(url, "the address") == url


async def test_a_refused_message_ends_its_process_naming_the_answer(provider: Site, consumer: Site) -> None:
    started = await consumer.post(
        "/negotiations",
        {"provider_id": provider.id, "provider_url": provider.dsp_url, "offer_id": "urn:uuid:none", "target": "t"},
    )
    ended = await consumer.wait_for(f"/negotiations/{started['id']}", "TERMINATED")
    (reason,) = ended["reasons"]
    assert reason.startswith("the counter-party could not be told: 400") and "None" not in reason
