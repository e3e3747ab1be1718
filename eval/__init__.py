"""Evaluation: metrics, information retention, lm-eval integration and benchmarks."""
