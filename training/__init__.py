"""Training: data (corpora, tokenizer, objectives), metrics, the Hugging Face `Trainer` wiring, LoRA and plots."""
