"""Data for training: corpora and dataset preparation (`corpora`), tokenizers (`tokenizer`) and the objectives'
batch builders (`objectives`)."""
