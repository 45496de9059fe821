"""Rollback: the deploy history and what ``tagkeeper previous`` answers from it.

``resolve`` holds the deploy history model and the pure resolution of the rollback target;
``ledger`` is the embedded SQLite ledger on a deploy host; ``github`` reads and writes
GitHub Deployments as a shared history; ``sources`` is the one cascade over them (ledger,
GitHub Deployments, registry) that ``previous``, ``deploy``, ``rollback`` and ``prune
--env`` read, with its settings as arguments; ``protection`` turns history into the
references pruning must keep.
"""
