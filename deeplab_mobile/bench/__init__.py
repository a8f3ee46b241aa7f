"""Measurements: latency timing (``latency``) and the benchmark apps (``models``: the Table 7 networks against
their peers; ``int8``, ``video``, ``data``, ``stats``, ``tiling``), each the body of a ``deeplab-mobile benchmark*``
command (docs/benchmark.md). Their results are files; nothing here is a test."""
