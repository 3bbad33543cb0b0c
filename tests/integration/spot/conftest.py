"""Fixtures of the spot-training workflow tests; the harness (and what it patches, and why) is spot_harness.py."""

from spot_harness import templates, world

__all__ = ["templates", "world"]
