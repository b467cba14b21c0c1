# Log usage: every allowed use is recorded by the provider (and by the consumer for its copy).
package tessera.usage.log_usage

# tessera:params
# The event name written to the usage log.
log_event := "use"

# tessera:end

default allow := false

allow if count(deny) == 0

deny := set()

obligations contains {"kind": "log", "event": log_event}
