"""Response header names the gateway adds to every answer."""

REQUEST_ID = "X-Request-ID"
MODEL = "X-FinOps-Model"
COST = "X-FinOps-Cost-USD"
WARNING = "X-FinOps-Warning"
ROUTE = "X-FinOps-Route-Decision"
