"""Adapters: one module per outside system, each behind a Protocol of the core.

``http`` holds the HTTP plumbing the registry adapters share (retries, backoff, error
translation, URL checks); ``ghcr`` speaks to GitHub Packages and ghcr.io. Adapters
receive their ``httpx.Client``; :func:`tagkeeper.adapters.http.build_client` builds one.
"""
