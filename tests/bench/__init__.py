"""Benchmarks for CNN Explorer: `python -m tests.bench.run [--quick] [--only NAME]`.

Nothing here is collected by pytest (no file starts with ``test_``); speed lives here, never in
the unit tests.
"""
