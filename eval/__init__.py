"""Evaluation, the top layer: information retention, memory banks, lm-eval glue, benchmarks, experiments and the
`memory-models` command line (`eval.cli`), which reaches every layer below."""
