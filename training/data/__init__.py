"""Data for training: corpora and dataset preparation (`corpora`) and tokenizers (`tokenizer`); the objectives'
batch builders are `training.objectives`."""
