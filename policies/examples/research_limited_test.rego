package tessera.usage.research_limited_test

import data.tessera.usage.research_limited

request := {
	"agreement": {"id": "urn:uuid:6c7f1a52-4c1e-4b8a-9d0e-2f3a4b5c6d7e", "assigner": "provider", "assignee": "consumer", "target": "patients-2026", "timestamp": "2026-11-01T09:00:00Z"},
	"caller": {"sub": "consumer", "org": "ACME", "region": "EU-DE", "security_profile": "base"},
	"purpose": "research",
	"uses": 2,
	"now": "2026-11-23T10:00:00Z",
	"asset": {"id": "patients-2026", "format": "csv"},
}

test_research_is_allowed if {
	research_limited.allow with input as request
	count(research_limited.deny) == 0 with input as request
}

test_email_is_masked if {
	research_limited.mask == {"email"} with input as request
}

test_other_purpose_is_denied if {
	not research_limited.allow with input as object.union(request, {"purpose": "marketing"})
	research_limited.deny == {`purpose "marketing" is not allowed (allowed: "research")`} with input as object.union(request, {"purpose": "marketing"})
}

test_fourth_use_is_denied if {
	research_limited.deny == {"use limit reached: 3 of 3 uses consumed"} with input as object.union(request, {"uses": 3})
}

test_missing_use_count_is_denied if {
	research_limited.deny == {"use count is missing"} with input as object.remove(request, ["uses"])
}

test_use_count_must_be_a_number if {
	research_limited.deny == {"use count is missing"} with input as object.union(request, {"uses": "3"})
}
