"""Proxies in front of the slots: the file tagkeeper owns is the truth about weights.

``model`` holds the values (slots, weights, what a file says, what a switch did);
``base`` the :class:`~tagkeeper.deploy.proxies.base.Proxy` protocol and the one
write / test / reload / confirm / restore cycle; ``nginx`` and ``traefik`` render and
read their file and confirm a switch through the proxy; ``snippet`` renders the
one-time set-up lines each proxy needs (what ``tagkeeper proxy-snippet`` prints).
"""
