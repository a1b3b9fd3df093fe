"""Benchmarks: ghga-tasks against curl, aria2c and the official ghga-connector.

Run from the repository root (docs/benchmarks.md explains the scenarios and results)::

    python -m benchmarks            # the full suite, ~15-20 minutes
    python -m benchmarks --smoke    # tiny sizes, one round: checks the script still works

Objects are served by nginx on loopback (``limit_rate`` simulates per-connection WAN
limits); the sandbox only answers the API calls. Every competitor runs as a subprocess,
alternating with the others, several rounds; results are medians with ratios to a
baseline measured in the same run. Nothing here asserts a time: it prints figures.
"""
