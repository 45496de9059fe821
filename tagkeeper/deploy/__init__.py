"""Deploys on a Docker host: the deploy and rollback commands' engine.

``script`` wraps the team's own deploy script: check the reference, pin its digest, record
the deploy, run the script, record how it ended.
"""
