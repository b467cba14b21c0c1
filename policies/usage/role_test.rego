package tessera.usage.role_test

import data.tessera.usage.role

test_one_matching_role_is_enough if {
	role.allow with input as {"caller": {"roles": ["member", "researcher"]}}
}

test_other_roles_are_denied if {
	role.deny == {`role: caller roles ["member"] hold none of ["researcher"]`} with input as {"caller": {"roles": ["member"]}}
}

test_no_roles_are_denied if {
	role.deny == {`role: caller roles [] hold none of ["researcher"]`} with input as {"caller": {}}
}

test_roles_as_a_string_are_denied if {
	not role.allow with input as {"caller": {"roles": "researcher"}}
}
