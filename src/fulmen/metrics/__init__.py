"""Prometheus metrics (``--metrics-bind``).

- :mod:`~fulmen.metrics.recorder`: the counters a server updates as it serves (a few increments per
  request) and the :class:`~fulmen.metrics.recorder.Snapshot` of them it hands out;
- :mod:`~fulmen.metrics.aggregate`: one report for all workers, the ended ones included, so that no
  counter goes backwards when a worker is replaced;
- :mod:`~fulmen.metrics.exposition`: that report in Prometheus' text format;
- :mod:`~fulmen.metrics.exporter`: the listener that serves it at ``/metrics`` (and nothing else).
"""
