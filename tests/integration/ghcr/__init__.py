"""Integration tests against the GHCR emulator."""
