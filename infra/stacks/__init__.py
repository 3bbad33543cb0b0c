"""Stacks: compositions of the constructs in :mod:`infra.constructs`, nothing else."""
