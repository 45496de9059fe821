"""The environment gate: which image references an environment may deploy.

``rules`` holds the environment tag rules (``latest``, untagged, moving pointers,
``dev-*``, floating aliases, prereleases), each a small object with its own reason code;
``scan`` finds image references in deploy files (compose/YAML, env files, shell scripts)
so that ``tagkeeper check --file`` can judge them with those rules: ``yaml_scalars`` and
``yaml_flow`` read YAML values as YAML does, ``shell`` reads shell commands (command
prefixes, ``sh -c`` strings), ``findings`` holds what they report and the interpolation of
``$VAR`` values.
"""
