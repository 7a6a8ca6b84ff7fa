"""Benchmarks: run each as `python -m bench.NAME`; results land in bench/results/."""
