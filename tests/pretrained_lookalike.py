"""Tiny look-alikes of pretrained decoder checkpoints (Llama 3.2, Qwen2/3, Mistral, Gemma) saved to folders.

Each folder holds a randomly initialised `*ForCausalLM` with the real model's config fields at tiny sizes
(GQA, tied or untied embeddings, Llama 3 rope scaling) and a byte-level BPE tokenizer with Llama-3-style special
tokens (`<|begin_of_text|>` prepended, `<|end_of_text|>`, `<|reserved_special_token_i|>`), so the conversion
path runs exactly as on a Hub checkpoint, offline.
"""

import pathlib

import torch
import transformers

HIDDEN, LAYERS, HEADS, KV_HEADS, POSITIONS = 32, 2, 4, 2, 64
LLAMA3_SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(4)]
TEXT = ("record 17: color = teal; city = oslo; The memory model reads the embeddings of earlier chunks. "
        "def add(a, b): return a + b  # python docs say: the quick brown fox jumps over the lazy dog 0123456789. ")


_TOKENIZER = []  # trained once per process


def make_tokenizer(folder) -> transformers.PreTrainedTokenizerFast:
    """A ~300-token byte-level BPE whose special tokens follow the Llama 3 tokenizer (BOS prepended, no pad)."""
    if not _TOKENIZER:
        _TOKENIZER.append(_train_tokenizer())
    _TOKENIZER[0].save_pretrained(folder)
    return _TOKENIZER[0]


def _train_tokenizer() -> transformers.PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator([TEXT] * 20, trainer)
    tokenizer.add_special_tokens(LLAMA3_SPECIAL_TOKENS)  # after the regular vocabulary, as in Llama 3 (128000+)
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                             pair="<|begin_of_text|> $A $B",
                                                             special_tokens=[("<|begin_of_text|>", bos)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>",
                                                eos_token="<|end_of_text|>")


def decoder_config(model_type: str, vocab_size: int, bos: int, eos: int, tied: bool = True):
    """Config of a tiny `model_type` causal LM with GQA (4 query heads, 2 key/value heads)."""
    common = dict(vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
                  num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HIDDEN // HEADS,
                  max_position_embeddings=POSITIONS, tie_word_embeddings=tied, bos_token_id=bos, eos_token_id=eos)
    if model_type == "llama":  # Llama 3.2: llama3 rope scaling, tied embeddings, GQA
        common["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 16}
    return transformers.AutoConfig.for_model(model_type, **common)


def make_decoder_folder(folder, model_type: str = "llama", tied: bool = True, dtype=torch.float32, seed: int = 0):
    """Save a tiny random `model_type` causal LM and its tokenizer to `folder`; returns the folder."""
    folder = pathlib.Path(folder)
    tokenizer = make_tokenizer(folder)
    decoder_config(model_type, len(tokenizer), 0, 1, tied).save_pretrained(folder)
    # AutoTokenizer picks the model type's tokenizer class (Qwen2's adds <|endoftext|>): size the vocabulary by it.
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    config = decoder_config(model_type, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tied)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # random weights at a visible scale, so that differences cannot hide
        for parameter in model.parameters():
            if parameter.ndim > 1:
                parameter.normal_(0.0, 0.2)
    model.to(dtype).save_pretrained(folder)
    return folder
