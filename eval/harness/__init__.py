"""lm-eval glue: evaluating saved models with lm-eval (`runner`), several models side by side (`compare`:
`memory-models eval`), offline look-alike data for MMLU / LongBench / SWDE (`lookalike`) and the package's
own tasks (`tasks/`)."""
