"""The benchmarks: scripts run from the repository root as ``python -m benchmarks.NAME`` (see
benchmarks/run_all.py); their shared helpers are in :mod:`benchmarks.common` and :mod:`benchmarks.bare_keras`."""
