"""Header names the gateway reads and adds to its answers."""

REQUEST_ID = "X-Request-ID"
MODEL = "X-FinOps-Model"
COST = "X-FinOps-Cost-USD"
WARNING = "X-FinOps-Warning"
ROUTE = "X-FinOps-Route-Decision"
# Request: "off" disables the fallback chain. Response: "<requested> -> <answering model>" after a fallback.
FALLBACK = "X-FinOps-Fallback"
ATTEMPTS = "X-FinOps-Attempts"  # on an answer that took more than one attempt
