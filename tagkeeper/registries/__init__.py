"""Registries: the places images live, each as a prune backend.

``factory`` opens the right backend for an image (``ghcr.io`` -> ``ghcr``, any other
host -> ``oci``, ``--local`` -> ``local``). ``distribution`` is the one ``/v2`` client
both registry backends share, with ``auth`` (every challenge and token exchange, the
realm policy) and ``cache`` (the one manifest cache of a run, and ``--manifest-cache``);
``backend`` is their common base and the manifest reader they hand the planner;
``digests`` says what a tag points at (one ``HEAD``, read access only) for deploys.
``ghcr`` is a GHCR package: the Packages REST API (``ghcr_api``: owner lookup, rate
limits; ``ghcr_versions``: a listing that holds still; ``ghcr_doctor``: what a token can
do) over the shared client; ``oci`` is any OCI distribution registry (``oci_times``:
creation times); ``local`` this host's Docker engine. ``manifests`` parses manifest
documents, ``credentials`` finds registry credentials as Docker does, ``pacing`` paces
deletes under an unpublished rate limit.
"""
