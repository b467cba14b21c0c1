# Next policy: a third party that receives the data from the consumer must be bound by this policy.
package tessera.usage.next_policy

# tessera:params
# The usage policy third parties get, by id and content hash.
next_policy_id := "third-party-research"

next_policy_hash := "sha256:0000000000000000000000000000000000000000000000000000000000000000"

# tessera:end

default allow := false

allow if count(deny) == 0

deny := set()

obligations contains {"kind": "next_policy", "policy": next_policy_id, "hash": next_policy_hash}
