"""Load and concurrency measurements against a real server (not collected by pytest):
`python -m tests.load.run` (mixed traffic, throughput, latency, RSS) and
`python -m tests.load.blas` (BLAS threads per worker vs shared, in-process)."""
