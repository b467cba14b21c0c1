# Notify a party: every allowed use is announced to a participant or URL.
package tessera.usage.notify

# tessera:params
# The participant to notify.
notify_party := "did:web:provider.example"

# Where to send the notification (an https URL), or null to use the party's registered endpoint.
notify_url := null

# The event announced.
notify_event := "use"

# tessera:end

default allow := false

allow if count(deny) == 0

deny := set()

obligations contains {"kind": "notify", "party": notify_party, "url": notify_url, "event": notify_event}
