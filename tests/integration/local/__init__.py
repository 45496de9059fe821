"""Integration tests of ``prune --local`` against the real Docker engine."""
