"""Benchmarks: selector speed and boundary quality, training-step cost, real-shape runs, the scale plan."""
