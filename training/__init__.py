"""Training utilities: objectives, data preparation and tokenizer training for the memory models."""
