"""Retention: which images of a repository to keep, and deleting the rest safely.

``policy`` holds the vocabulary (channels, tag classification, the policy);
``planner`` is the pure mark-and-sweep planner (policy in, a plan of keeps and deletes
with reasons out; it never imports a backend), ``decisions`` the plan it returns and
its delete order, ``collector`` its pause of the garbage collector; ``times`` says
which creation times can change a decision; ``executor`` applies a plan to a backend
(parents first, re-checks, re-planning around refusals); ``runner`` is the prune of one
image end to end (list, protect, plan, apply, report) and of several images (with
confirmation and progress as callbacks, the worst exit code winning), and the policy a
configuration and flags make, as the CLI and library users call them.
"""
