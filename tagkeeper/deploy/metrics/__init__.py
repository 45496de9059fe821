"""Metrics sources for canary steps and the watch: per-slot requests, 5xx and p95.

``model`` holds the values and the :class:`~tagkeeper.deploy.metrics.model.MetricsSource`
protocol; ``accesslog`` reads the proxy's JSON access log (nginx with tagkeeper's
``log_format``, or Traefik's); ``prometheus`` queries Prometheus's HTTP API. Both read
only what happened since a mark, and answer "no data" rather than guess.
"""
