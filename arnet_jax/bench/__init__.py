"""Benchmarks, each run as `python -m arnet_jax.bench.<name>`."""
