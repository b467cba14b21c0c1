#!/bin/sh
# The compose stack's one-shot set-up (docs/operations.md): the broker's authority key, two connectors'
# identities, and their admission by the broker operator. Idempotent: what exists is kept.
set -eu
STATE=/var/lib/tessera
BROKER_DB="postgresql+asyncpg://tessera:${POSTGRES_PASSWORD}@postgres:5432/broker"

if [ ! -f "$STATE/broker/broker.toml" ]; then
    tessera broker init --dir "$STATE/broker" --url http://broker:8500 --host 0.0.0.0
fi
for name in provider consumer; do
    if [ ! -f "$STATE/$name/connector.toml" ]; then
        tessera connector init --dir "$STATE/$name" --participant-id "urn:tessera:$name" \
            --url "http://$name:8181" --broker-url http://broker:8500 --host 0.0.0.0 \
            --policy-engine opa --opa-url http://opa:8181
        TESSERA_DATABASE_URL="$BROKER_DB" tessera participant add "urn:tessera:$name" \
            --broker-dir "$STATE/broker" --jwk "$STATE/$name/connector.jwk.json" \
            --org "$name" --region EU-DE --security-profile base
    fi
done
