package tessera.usage.notify_test

import data.tessera.usage.notify

test_use_is_allowed_and_notified if {
	notify.allow with input as {}
	notify.obligations == {{"kind": "notify", "party": "did:web:provider.example", "url": null, "event": "use"}} with input as {}
}

test_url_is_passed_on if {
	some o in notify.obligations with notify.notify_url as "https://p.example/hook"
	o.url == "https://p.example/hook"
}
