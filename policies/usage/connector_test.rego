package tessera.usage.connector_test

import data.tessera.usage.connector

test_named_connector_is_allowed if {
	connector.allow with input as {"connector": {"id": "https://consumer.example/connector"}}
}

test_other_connector_is_denied if {
	connector.deny == {`connector: "https://evil.example" not in allowed connectors ["https://consumer.example/connector"]`} with input as {"connector": {"id": "https://evil.example"}}
}

test_missing_connector_is_denied if {
	not connector.allow with input as {"caller": {"sub": "x"}}
}
