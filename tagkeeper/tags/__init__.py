"""Tags: which immutable tags a build gets.

``context`` reads what is being built (GitHub Actions variables and event payload, or
``git`` outside CI, or flags); ``compute`` turns that context into ``dev-<sha>``,
``pr-<n>`` and SemVer release tags, pure.
"""
