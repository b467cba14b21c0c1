"""The Tessera kernel: what every service shares, importing nothing else of ours.

errors and problems (RFC 9457), store (the database), clock, ids, json (the JSON alias and a checked
parse), identity (keys, tokens, the one JWT verifier), crypto (profiles: signed documents in ES256 or
SM2, audit hashes), dsp (Dataspace Protocol messages), terms
(ODRL terms), audit (hash chain), policy (the engine interface with the embedded Rego and OPA engines)
and cli (the root command).
"""
