"""Budgets that cannot be overspent: GCRA token buckets in DynamoDB, reservations, caps, breaker, alerts."""
