"""Speed and memory benchmarks (`python -m memory_models.eval.benchmarks ...`, `memory-models benchmark ...`): one
module per
workload, the timing harness (`timing`), shared model builders (`models`), targets and tables (`reports`)."""
