"""Information-retention probe and CLI on tiny offline checkpoints (spec §3, Tables 1-2)."""

import json
import random

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, LlamaModel, PreTrainedTokenizerFast
from transformers import Qwen3Config, Qwen3Model

from memory_models.eval.information_retention import (
    RetentionResult,
    base_encoder,
    decoder_config,
    evaluate_probe,
    format_table,
    load_encoder,
    load_texts,
    main,
    measure_retention,
    tokenize_texts,
    train_probe,
)
from memory_models.modeling_memory import (
    MaskedMixerConfig, MaskedMixerForCausalLM, MemoryAutoencoder, MemoryAutoencoderConfig,
)
from test_reliability_loading import transformers_warnings

WORDS = ("the cat dog bird sees eats likes a big small red blue green fast slow old new house tree river "
         "stone moon sun runs jumps sleeps under over near far and or with").split()
FAST = dict(train_steps=20, batch_size=8, eval_documents=10, decoder_layers=1, decoder_hidden=32, decoder_heads=2)


def sentences(count: int, seed: int = 0, words: int = 24) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(count)]


@pytest.fixture(scope="module")
def tokenizer():
    """A word-level tokenizer over WORDS plus [PAD]/[UNK]/[BOS]/[EOS], built offline."""
    model = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"])
    model.train_from_iterator([" ".join(WORDS)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=model, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="[BOS]", eos_token="[EOS]")


def special(tokenizer):
    return dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)


def tiny_encoder(kind: str, tokenizer):
    """Random tiny encoders of several architectures (hidden 32, 2 layers), vocab = the tokenizer's."""
    vocab = len(tokenizer)
    if kind == "bert":
        return BertModel(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=64, pad_token_id=0))
    llama = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, **special(tokenizer))
    if kind == "llama_clm":
        return LlamaForCausalLM(LlamaConfig(**llama))
    if kind == "qwen3":
        return Qwen3Model(Qwen3Config(**llama, head_dim=16))
    if kind == "mixer_clm":
        return MaskedMixerForCausalLM(MaskedMixerConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                                        max_position_embeddings=16, **special(tokenizer)))
    raise ValueError(kind)


def save_checkpoint(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def check_results(results, contexts=(8, 16)):
    assert [r.context for r in results] == list(contexts)
    for r in results:
        assert isinstance(r, RetentionResult)
        assert all(map(lambda v: v == v and abs(v) < float("inf"), (r.loss, r.entropy_ratio, r.accuracy)))
        assert 0 <= r.accuracy <= 1 and r.entropy_ratio < 1 and r.eval_targets > 0


@pytest.mark.parametrize("kind", ["bert", "llama_clm", "qwen3"])
def test_cli_on_transformers_checkpoints(kind, tokenizer, tmp_path):
    """BERT / Llama (causal-LM folder) / Qwen3 folders run through main(): finite table rows and JSON written."""
    torch.manual_seed(0)
    folder = save_checkpoint(tiny_encoder(kind, tokenizer), tokenizer, tmp_path / kind)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentences(200)))
    output = tmp_path / "out" / "retention.json"
    assert main(["--encoder", folder, "--context", "8", "16", "--dataset", str(corpus), "--steps", "20",
                 "--batch-size", "8", "--eval-documents", "10", "--decoder-layers", "1",
                 "--decoder-hidden", "32", "--decoder-heads", "2", "--output", str(output)]) == 0
    payload = json.loads(output.read_text())
    check_results([RetentionResult(**row) for row in payload["results"]])
    assert [row["context"] for row in payload["results"]] == [8, 16]
    assert payload["results"][0]["encoder"] == folder and payload["settings"]["steps"] == 20


def test_our_checkpoints_work_as_encoders(tokenizer, tmp_path):
    """A masked-mixer CLM folder (penultimate pooling) and a memory-autoencoder folder are valid encoders."""
    torch.manual_seed(0)
    mixer = save_checkpoint(tiny_encoder("mixer_clm", tokenizer), tokenizer, tmp_path / "mixer")
    texts = sentences(60)
    check_results(measure_retention(mixer, contexts=(8, 16), dataset=texts, pooling="penultimate", **FAST))
    encoder = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=16, **special(tokenizer))
    autoencoder = MemoryAutoencoder(MemoryAutoencoderConfig(encoder, encoder.to_dict(), max_position_embeddings=16,
                                                            **special(tokenizer)))
    folder = save_checkpoint(autoencoder, tokenizer, tmp_path / "autoencoder")
    module, name = load_encoder(folder)
    assert isinstance(module, LlamaModel) and name == folder
    check_results(measure_retention(folder, contexts=(8, 16), dataset=texts, fresh_embedding=True, **FAST))


@pytest.mark.parametrize("kind", ["bert", "llama_clm", "mixer_clm"])
def test_a_saved_encoder_loads_quietly_with_its_own_weights(kind, tokenizer, tmp_path):
    """A causal LM's folder loads through the class it was saved from, so transformers reports no unused head
    (the probe drops it on purpose); a base model's folder loads as the base model. The weights are the saved ones."""
    torch.manual_seed(0)
    saved = tiny_encoder(kind, tokenizer)
    folder = save_checkpoint(saved, tokenizer, tmp_path / kind)
    loaded = []
    assert not [m for m in transformers_warnings(lambda: loaded.append(load_encoder(folder))) if "LOAD REPORT" in m]
    module, _ = loaded[0]
    expected = base_encoder(saved).state_dict()
    assert type(module) is type(base_encoder(saved)) and module.state_dict().keys() == expected.keys()
    for key, tensor in module.state_dict().items():
        torch.testing.assert_close(tensor, expected[key], rtol=0, atol=0)


def test_base_encoder_strips_heads(tokenizer):
    """Causal-LM and mixer wrappers give their base models; non-transformers modules are rejected."""
    assert isinstance(base_encoder(tiny_encoder("llama_clm", tokenizer)), LlamaModel)
    mixer = tiny_encoder("mixer_clm", tokenizer)
    assert base_encoder(mixer) is mixer.model
    with pytest.raises(ValueError, match="Linear"):
        base_encoder(torch.nn.Linear(2, 2))


def test_probe_training_leaves_the_encoder_unchanged(tokenizer):
    """Training the probe moves the decoder but neither the probe's frozen encoder nor the source model."""
    torch.manual_seed(0)
    source = tiny_encoder("bert", tokenizer)
    snapshot = {k: v.clone() for k, v in source.state_dict().items()}
    probe = MemoryAutoencoder.from_encoder(source, decoder_config(len(tokenizer), 8, 32, 1, 2, tokenizer),
                                           max_position_embeddings=8)
    decoder_before = {k: v.clone() for k, v in probe.decoder.state_dict().items()}
    data = tokenize_texts(tokenizer, sentences(16), 8, len(tokenizer))
    train_probe(probe, data, steps=5, batch_size=4, lr=1e-3, seed=0)
    for key, value in probe.encoder.state_dict().items():
        assert torch.equal(value, snapshot[key]), key
    for key, value in source.state_dict().items():
        assert torch.equal(value, snapshot[key]), key
    assert any(not torch.equal(v, decoder_before[k]) for k, v in probe.decoder.state_dict().items())


def test_tokenize_texts_pads_right_with_ignored_labels(tokenizer):
    """Short texts are right-padded with the pad id, labels are -100 there; long texts are truncated."""
    data = tokenize_texts(tokenizer, ["cat dog", "the " * 20, ""], 6, len(tokenizer))
    assert data["input_ids"].shape == (2, 6)  # the empty text is dropped
    assert data["attention_mask"][0].tolist() == [1, 1, 0, 0, 0, 0]
    assert data["labels"][0, 2:].tolist() == [-100] * 4
    assert (data["input_ids"][0, 2:] == tokenizer.pad_token_id).all()
    assert data["attention_mask"][1].all()
    with pytest.raises(ValueError, match="outside the encoder vocabulary"):
        tokenize_texts(tokenizer, ["cat dog"], 6, vocab_size=3)


def test_load_texts_list_split():
    """A list of texts splits deterministically: every 5th is held out, empty texts are skipped."""
    texts = [f"text {i}" for i in range(20)] + ["", "  "]
    assert load_texts(texts, "test", 100) == ["text 0", "text 5", "text 10", "text 15"]
    assert len(load_texts(texts, "train", 100)) == 16
    assert load_texts(texts, "train", 3) == ["text 1", "text 2", "text 3"]
    with pytest.raises(ValueError, match="no 'test' texts"):
        load_texts(["", " "], "test", 10)


def test_informative_encoder_retains_more_than_a_constant_one(tokenizer):
    """Same decoder budget: a random Llama encoder (whose last state carries its inputs) beats a constant encoder.

    Zeroing the token embedding makes every hidden state 0 for every input, so its probe can only learn the
    per-position marginal; the random encoder's embedding holds at least the last token.
    """
    torch.manual_seed(0)
    informative = tiny_encoder("llama_clm", tokenizer).model
    constant = tiny_encoder("llama_clm", tokenizer).model
    with torch.no_grad():
        constant.embed_tokens.weight.zero_()
    texts = sentences(400, words=12)
    settings = dict(contexts=(8,), dataset=texts, train_steps=60, batch_size=16, eval_documents=40, lr=3e-3,
                    decoder_layers=1, decoder_hidden=64, decoder_heads=2)
    good = measure_retention(informative, tokenizer, **settings)[0]
    bad = measure_retention(constant, tokenizer, **settings)[0]
    # Seeds 0-2 measured: loss gaps 0.13-0.16 nats, accuracy gaps 7-14 points.
    assert good.loss < bad.loss - 0.05, (good, bad)
    assert good.accuracy > bad.accuracy + 0.04, (good, bad)


def test_format_table():
    """The table has the paper's columns and one row per context."""
    table = format_table([RetentionResult(16, 1.0, 0.719, 0.402, "bert", 10)])
    assert table.splitlines()[0] == "| n_ctx | loss | H_r | accuracy |"
    assert table.splitlines()[2] == "| 16 | 1.000 | 0.719 | 40.20% |"


def test_memory_model_checkpoint_works_as_encoder(tokenizer, tmp_path):
    """A MemoryForCausalLM folder gives its chunk encoder; its memories are probed like any embedding."""
    from memory_models.configuration import build_model, get_preset

    torch.manual_seed(0)
    ids = special(tokenizer)
    model = build_model(get_preset("memory-transformer-tiny", vocab_size=len(tokenizer), **ids))
    folder = save_checkpoint(model, tokenizer, tmp_path / "memory")
    module, _ = load_encoder(folder)
    assert isinstance(module, LlamaModel)
    torch.testing.assert_close(module.embed_tokens.weight, model.encoder.embed_tokens.weight)
    check_results(measure_retention(folder, contexts=(8,), dataset=sentences(60), **FAST), contexts=(8,))
