"""Registries: the places images live, each as a prune backend.

``factory`` opens the right backend for an image (``ghcr.io`` -> ``ghcr``, any other
host -> ``oci``, ``--local`` -> ``local``); ``ghcr`` speaks GitHub Packages and ghcr.io,
``oci`` any OCI distribution registry, ``local`` this host's Docker engine.
``manifests`` parses manifest documents, ``credentials`` finds registry credentials as
Docker does, ``pacing`` paces deletes under an unpublished rate limit.
"""
