"""Benchmarks of the course's explanation methods: ``python -m benchmarks`` (see run.py)."""
