"""Virtual keys: random bearer keys stored only as sha256 hashes, bound to a tier and to tags."""
