"""tagkeeper: immutable image tags, safe registry pruning and exact rollbacks.

The package is a library first: the CLI (``tagkeeper.cli``) and the GitHub Action are
thin shells over the modules below it. Importing ``tagkeeper`` is cheap; backends that
need httpx, docker or PyGithub import them only when they are used.
"""

__version__ = "0.1.0"
