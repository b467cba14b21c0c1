package tessera.usage.consumer_test

import data.tessera.usage.consumer

test_named_consumer_is_allowed if {
	consumer.allow with input as {"caller": {"sub": "did:web:consumer.example"}}
}

test_other_consumer_is_denied if {
	consumer.deny == {`consumer: "did:web:other" not in allowed consumers ["did:web:consumer.example"]`} with input as {"caller": {"sub": "did:web:other"}}
}

test_assignee_in_the_agreement_is_not_enough if {
	not consumer.allow with input as {"agreement": {"assignee": "did:web:consumer.example"}, "caller": {"sub": "did:web:other"}}
}

test_missing_caller_is_denied if {
	consumer.deny == {`consumer: null not in allowed consumers ["did:web:consumer.example"]`} with input as {}
}
