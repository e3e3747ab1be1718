"""Training: the typed job (`job`), data (corpora, tokenizer), the objective registry (`objectives`), metrics, the
one training loop (`loop`, the Hugging Face `Trainer` wiring in `trainer` and `train`), LoRA and plots."""
