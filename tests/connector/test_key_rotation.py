"""A connector rotates its identity key (docs/operations.md "Rotate keys"): the operator replaces the key at
the broker, the connector restarts with it, and a counter-party that still caches the old key verifies the
next agreement's signature with the new one instead of refusing it."""

from pathlib import Path

from broker.authority import update_participant
from tessera.identity import generate_key, public_jwk, save_private_key
from tessera.store import Database
from tests.dataspace import Dataspace, negotiate, publish


async def test_after_a_key_rotation_the_next_agreement_is_countersigned(space: Dataspace, people_csv: Path) -> None:
    provider = await space.start(await space.admit("provider"))
    consumer = await space.start(await space.admit("consumer"))
    offer = await publish(provider, people_csv)
    first = await negotiate(consumer, provider, offer)
    assert first["state"] == "FINALIZED", first  # the consumer now caches the provider's record and key

    key = generate_key()
    save_private_key(key, provider.config.key_path)
    assert space.broker_config is not None
    broker = await Database.open(space.broker_config.database_url)
    try:
        await update_participant(broker, provider.id, {}, jwk=public_jwk(key))
    finally:
        await broker.close()
    await provider.server.restart()

    second = await negotiate(consumer, provider, offer)
    assert second["state"] == "FINALIZED", (await consumer.api.get(f"/negotiations/{second['id']}/timeline")).text
    kept = (await consumer.api.get(f"/agreements/{second['agreement_id']}")).json()
    assert kept["countersigned"] is True
