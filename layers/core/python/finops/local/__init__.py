"""The local stack (``make run``): moto server, simulated provider and an API Gateway bridge."""
