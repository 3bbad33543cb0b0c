"""AI FinOps gateway: the shared domain package (a Lambda layer at /opt/python/finops)."""
