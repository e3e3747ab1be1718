"""`memory-models convert`: pretrained decoders (Llama 3.2 / Qwen2 / Qwen3 / Mistral / Gemma look-alikes) become
memory models with the same logits without memories, consistent memories and generation, checked shapes."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

from memory_models.configuration import get_preset
from memory_models.conversion.isolation import run_without_our_packages
from memory_models.conversion.pretrained_decoder import convert, main as convert_main
from memory_models.modeling_memory import MemoryConfig, MemoryForCausalLM
from pretrained_lookalike import make_decoder_folder
from tokenizer_loading import assert_tokenizer_loads_quietly

CHUNK, SLOTS = 4, 4
# (model_type, tied embeddings): every family with GQA; tied and untied both covered.
ARCHITECTURES = [("llama", True), ("qwen2", False), ("qwen3", True), ("mistral", False), ("gemma", True),
                 ("gemma3_text", True)]


@pytest.fixture(scope="module")
def decoder_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoders")
    return {model_type: make_decoder_folder(root / model_type, model_type, tied)
            for model_type, tied in ARCHITECTURES}


@pytest.fixture(scope="module")
def converted(decoder_folders):
    """One converted fp32 memory model per architecture (fresh tiny encoder), with its plain decoder."""
    out = {}
    for model_type, folder in decoder_folders.items():
        torch.manual_seed(0)
        model, tokenizer = convert(folder, encoder_preset="autoencoder-tiny", chunk_size=CHUNK,
                                   num_memory_slots=SLOTS, dtype="float32")
        plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        out[model_type] = (model.eval(), plain, tokenizer)
    return out


def ids_of(batch, length, vocab, seed=1):
    return torch.randint(0, vocab - 8, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("model_type", [name for name, _ in ARCHITECTURES])
def test_no_memory_logits_equal_plain_model(converted, model_type):
    """With no memories (one chunk, masked filler) the memory model's logits equal the plain decoder's (fp32)."""
    model, plain, _ = converted[model_type]
    ids = ids_of(2, CHUNK, model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, plain(ids).logits)
    assert model.decoder.config.model_type == model_type
    tied = model.decoder.config.tie_word_embeddings
    assert (model.decoder.lm_head.weight is model.decoder.get_input_embeddings().weight) == tied


@pytest.mark.parametrize("model_type", [name for name, _ in ARCHITECTURES])
def test_precomputed_memories_and_cached_generation(converted, model_type):
    """encode() + memory_embeds equals the internal path; cached generation across chunk boundaries equals
    uncached, and a left-padded batch generates what each row generates alone."""
    model, _, _ = converted[model_type]
    vocab = model.config.vocab_size
    ids = ids_of(2, 2 * CHUNK + 3, vocab)
    with torch.no_grad():
        full = model(ids).logits
        memories = model.encode(ids[:, : 2 * CHUNK])
        torch.testing.assert_close(model(ids[:, 2 * CHUNK :], memory_embeds=memories).logits, full[:, 2 * CHUNK :])
    prompt = ids[:, :3]
    greedy = dict(max_new_tokens=2 * CHUNK + 1, min_new_tokens=2 * CHUNK + 1, do_sample=False)  # 2 boundaries
    cached = model.generate(prompt, **greedy)
    assert torch.equal(cached, model.generate(prompt, use_cache=False, **greedy))
    rows = [ids[0, :3], ids[1, :6]]
    batch = torch.full((2, 6), model.config.pad_token_id)
    mask = torch.zeros_like(batch)
    for r, row in enumerate(rows):
        batch[r, 6 - len(row) :], mask[r, 6 - len(row) :] = row, 1
    together = model.generate(batch, attention_mask=mask, pad_token_id=model.config.pad_token_id, **greedy)
    for r, row in enumerate(rows):
        alone = model.generate(row[None], **greedy)
        assert torch.equal(together[r, 6 - len(row) :], alone[0])


def test_cli_writes_hub_folder_that_loads_without_our_packages(decoder_folders, tmp_path):
    """convert keeps the checkpoint's bf16, copies the tokenizer and its special ids, and the folder reloads
    with torch + transformers only, giving the plain Llama's logits without memories."""
    source = tmp_path / "llama-bf16"
    make_decoder_folder(source, "llama", tied=True, dtype=torch.bfloat16)
    out = tmp_path / "memory"
    assert convert_main(["--decoder", str(source), "--encoder-preset", "autoencoder-tiny", "--chunk-size", "8",
                         "--memory-slots", "4", "--output", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["filler"] == "masked"
    assert config["decoder_config"]["model_type"] == "llama"
    tokenizer_files = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_files["bos_token"] == "<|begin_of_text|>"
    assert assert_tokenizer_loads_quietly(out).bos_token == "<|begin_of_text|>"
    saved = AutoConfig.from_pretrained(out)
    assert (saved.bos_token_id, saved.eos_token_id, saved.pad_token_id) == (
        saved.decoder_config.bos_token_id, saved.decoder_config.eos_token_id, saved.decoder_config.eos_token_id)
    assert saved.copy_delimiter_token_id == saved.vocab_size - 4  # <|reserved_special_token_0|>
    script = """
        import json, sys, torch, transformers
        memory, plain = sys.argv[1:3]
        m = transformers.AutoModelForCausalLM.from_pretrained(memory, trust_remote_code=True).eval()
        p = transformers.AutoModelForCausalLM.from_pretrained(plain).eval()
        ids = torch.arange(3, 11)[None]
        out = {"dtype": str(m.dtype), "tied": m.decoder.lm_head.weight is m.decoder.model.embed_tokens.weight}
        with torch.no_grad():
            reference = p(ids).logits.float()
            out["bf16_diff"] = (m(ids).logits.float() - reference).abs().max().item()
            out["scale"] = reference.abs().max().item()
            out["fp32_diff"] = (m.float()(ids).logits - p.float()(ids).logits).abs().max().item()
        print(json.dumps(out))
    """
    result = run_without_our_packages(script, out, source, timeout=300)
    assert result["dtype"] == "torch.bfloat16" and result["tied"]
    assert result["fp32_diff"] < 1e-4 and result["bf16_diff"] < 0.02 * result["scale"]  # bf16 rounding only


def test_memory_config_accepts_native_configs_and_rejects_others():
    """decoder_config may be any native decoder-only config object or dict; others raise naming the model_type."""
    qwen = AutoConfig.for_model("qwen3", vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
    encoder = get_preset("autoencoder-tiny").encoder_config
    config = MemoryConfig(encoder_config=encoder, decoder_config=qwen, chunk_size=8, num_memory_slots=4)
    again = MemoryConfig.from_dict(config.to_dict())
    assert again.decoder_config.model_type == "qwen3" and again.decoder_config.num_key_value_heads == 2
    for bad in (AutoConfig.for_model("t5", vocab_size=99), AutoConfig.for_model("bert", vocab_size=99)):
        with pytest.raises(ValueError, match=repr(bad.model_type)):
            MemoryConfig(encoder_config=encoder, decoder_config=bad, chunk_size=8, num_memory_slots=4)
    soft = AutoConfig.for_model("gemma2", vocab_size=99, hidden_size=32, num_hidden_layers=2)
    with pytest.raises(ValueError, match="'gemma2'.*final_logit_softcapping"):
        MemoryConfig(encoder_config=encoder, decoder_config=soft, chunk_size=8, num_memory_slots=4)


def test_shapes_are_checked_before_loading(decoder_folders, tmp_path, monkeypatch):
    """A mismatched encoder (preset or saved) or a too-small vocabulary fails with both shapes named, before
    any decoder weight is loaded."""
    def no_loading(*args, **kwargs):
        raise AssertionError("decoder weights were loaded before the shape checks")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_loading)
    folder = decoder_folders["llama"]
    with pytest.raises(ValueError, match=r"preset 'memory-transformer-tiny'.*hidden_size: 32 != 48"):
        encoder_dir = tmp_path / "ae48"
        ae = get_preset("autoencoder-tiny", vocab_size=AutoConfig.from_pretrained(folder).vocab_size)
        ae.encoder_config.hidden_size = 48
        ae.save_pretrained(encoder_dir)
        convert(folder, encoder_from=encoder_dir, encoder_preset="memory-transformer-tiny", chunk_size=8,
                num_memory_slots=4)
    with pytest.raises(ValueError, match="encoder vocabulary 99 does not fit the decoder vocabulary"):
        other = tmp_path / "ae99"
        get_preset("autoencoder-tiny").save_pretrained(other)
        convert(folder, encoder_from=other, chunk_size=8, num_memory_slots=4)
    small = tmp_path / "small-vocab"
    make_decoder_folder(small, "llama")
    config = LlamaConfig.from_pretrained(small)
    config.vocab_size = 100
    config.save_pretrained(small)
    with pytest.raises(ValueError, match=r"decoder vocabulary 100 is smaller than the tokenizer \(\d+ tokens\)"):
        convert(small, encoder_preset="autoencoder-tiny", chunk_size=8, num_memory_slots=4)
    bert = tmp_path / "bert"
    AutoConfig.for_model("bert", vocab_size=99).save_pretrained(bert)
    with pytest.raises(ValueError, match="'bert'"):
        convert(bert)


def test_from_pretrained_decoder_does_not_materialise_random_decoder(decoder_folders, monkeypatch):
    """The memory model is built around the loaded decoder on the meta device: no decoder weight is initialised
    at random (every decoder tensor is the loaded one)."""
    plain = AutoModelForCausalLM.from_pretrained(decoder_folders["qwen2"], dtype=torch.float32)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    encoder_config = get_preset("autoencoder-tiny", vocab_size=plain.config.vocab_size).encoder_config
    model = MemoryForCausalLM.from_pretrained_decoder(plain, encoder_config=encoder_config, chunk_size=8,
                                                      num_memory_slots=4, filler="learned")
    assert model.decoder is plain
    for key, value in model.decoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(not t.is_meta for t in model.parameters()) and model.filler.requires_grad


def test_decoder_only_export_is_the_native_decoder(converted, tmp_path):
    """export --decoder-only writes a LlamaForCausalLM folder (tokenizer, model card naming its origin, no code)
    that loads without trust_remote_code and gives model.decoder's logits bit for bit."""
    from memory_models.conversion.export_to_hub import export_model
    from memory_models.conversion.export_to_hub import main as export_main

    model, _, tokenizer = converted["llama"]
    whole = export_model(model, tmp_path / "memory", tokenizer)
    out = tmp_path / "decoder"
    export_main(["--model", str(whole), "--decoder-only", "--output", str(out)])
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "auto_map" not in config
    assert not list(out.glob("*.py")) and (out / "tokenizer.json").exists()
    assert_tokenizer_loads_quietly(out)
    assert str(whole) in (out / "README.md").read_text()
    decoder = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(decoder).__name__ == "LlamaForCausalLM"
    ids = ids_of(2, 20, model.config.vocab_size)
    with torch.no_grad():
        assert torch.equal(decoder(ids).logits, model.decoder(ids).logits)
    from memory_models.configuration import build_model

    with pytest.raises(ValueError, match="'masked_mixer'.*no native transformers class"):
        from memory_models.conversion.extract_decoder import extract_decoder

        extract_decoder(build_model(get_preset("memory-mixer-tiny")))


def test_converted_models_get_zero_learned_positions(converted, decoder_folders, tmp_path, caplog):
    """convert gives the decoder a zero-initialised learned position table in its dtype (`--position-embedding none`
    gives none); once trained (non-zero), export --decoder-only warns and says in the model card that the native
    decoder reads tokens without it."""
    from memory_models.conversion.export_to_hub import export_model
    from memory_models.conversion.export_to_hub import main as export_main

    model, _, tokenizer = converted["llama"]
    table = model.decoder_position_embeddings.weight
    assert model.config.position_embedding == "learned" and table.shape == (SLOTS + CHUNK, model.config.hidden_size)
    assert torch.count_nonzero(table) == 0 and table.dtype == model.decoder.dtype
    plain, _ = convert(decoder_folders["llama"], encoder_preset="autoencoder-tiny", chunk_size=CHUNK,
                       num_memory_slots=SLOTS, position_embedding="none")
    assert plain.decoder_position_embeddings is None and plain.config.position_embedding == "none"
    trained = MemoryForCausalLM(model.config)
    trained.load_state_dict(model.state_dict())
    torch.nn.init.normal_(trained.decoder_position_embeddings.weight)
    whole = export_model(trained, tmp_path / "memory", tokenizer)
    with caplog.at_level("WARNING"):
        assert export_main(["--model", str(whole), "--decoder-only", "--output", str(tmp_path / "decoder")]) == 0
    assert "reads tokens without them" in caplog.text
    assert "reads tokens without it" in (tmp_path / "decoder" / "README.md").read_text()


def test_presets_honour_vocab_size_and_reject_unknown_keywords():
    """vocab_size reaches both sub-configs of llama-3.2-1b-memory; a typo is a ValueError; the Fig. S6
    autoencoder's encoder is exactly llama-3.2-1b-memory's encoder."""
    config = get_preset("llama-3.2-1b-memory", vocab_size=151936)  # e.g. a Qwen vocabulary
    assert config.vocab_size == config.decoder_config.vocab_size == config.encoder_config.vocab_size == 151936
    with pytest.raises(ValueError, match=r"'memory-transformer-tiny'.*\['chunk_sizee'\]"):
        get_preset("memory-transformer-tiny", chunk_sizee=8)
    with pytest.raises(ValueError, match=r"\['vocab_size'\]"):
        get_preset("llm-retention-probe-table2", vocab_size=10)
    autoencoder = get_preset("autoencoder-llama3-figs6")
    assert autoencoder.encoder_config.to_dict() == get_preset("llama-3.2-1b-memory").encoder_config.to_dict()
    assert get_preset("autoencoder-llama3-figs6", vocab_size=300).encoder_config.vocab_size == 300


def test_gradient_checkpointing_gives_the_same_gradients(decoder_folders):
    """Gradient checkpointing through the memory model (encoder and pretrained decoder) changes no gradient."""
    torch.manual_seed(0)
    model, _ = convert(decoder_folders["llama"], encoder_preset="autoencoder-tiny", chunk_size=CHUNK,
                       num_memory_slots=SLOTS, dtype="float32")
    ids = ids_of(2, 3 * CHUNK, model.config.vocab_size)
    grads = []
    for checkpointing in (False, True):
        model.zero_grad()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.decoder.model.gradient_checkpointing
        model.train()
        model(ids, labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any(n.startswith("encoder.") for n in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_train_refuses_a_plain_causal_lm_for_memory_objectives(tmp_path):
    """`train --init-from LLAMA_DIR --objective copy` points to `memory-models convert` before loading weights."""
    from memory_models.training import train
    from memory_models.training.job import TrainJob

    folder = make_decoder_folder(tmp_path / "llama", "llama")
    job = TrainJob.from_argv(["--init-from", str(folder), "--objective", "copy", "--output-dir", str(tmp_path / "r")])
    with pytest.raises(ValueError, match="plain 'llama' causal LM.*memory-models convert --decoder"):
        train.build_model(job, None)  # refused before the tokenizer is needed


def test_encoder_from_with_other_heads_builds_the_model_for_the_source_encoder(tmp_path):
    """`--encoder-from` an autoencoder whose encoder has the preset's shapes but another number of heads: the model
    is built with the source's encoder config, so its memories are exactly the autoencoder encoder's pooled states;
    copying those weights into a 2-head encoder (which would compute other memories, silently) is a ValueError."""
    from memory_models.configuration import build_model
    from memory_models.training import train
    from memory_models.training.job import TrainJob

    tokenizer = train.load_tokenizer(None)
    ae_config = get_preset("autoencoder-tiny", vocab_size=len(tokenizer))
    encoder = ae_config.encoder_config  # 4 heads of 8 dimensions: the same weight shapes as 2 of 16
    encoder.num_attention_heads, encoder.num_key_value_heads, encoder.head_dim = 4, 4, 8
    autoencoder = build_model(ae_config)
    autoencoder.save_pretrained(tmp_path / "ae")
    preset_model = build_model(get_preset("memory-transformer-tiny", vocab_size=len(tokenizer)))
    assert preset_model.config.encoder_config.num_attention_heads == 2
    with pytest.raises(ValueError, match=r"computes differently.*num_attention_heads: 4 != 2"):
        train.copy_encoder(preset_model, str(tmp_path / "ae"))
    job = TrainJob.from_argv(["--preset", "memory-transformer-tiny", "--objective", "blank_copy", "--encoder-from",
                              str(tmp_path / "ae"), "--freeze-encoder", "--output-dir", str(tmp_path / "run")])
    model = train.build_model(job, tokenizer)
    assert model.config.encoder_config.num_attention_heads == 4
    ids = torch.randint(4, 99, (3, 8))
    with torch.no_grad():
        expected = autoencoder.encoder(input_ids=ids).last_hidden_state[:, -1]
        torch.testing.assert_close(model.encode(ids)[:, 0], expected)
    model.save_pretrained(tmp_path / "memory")  # the saved config records the encoder it has
    reloaded = type(model).from_pretrained(tmp_path / "memory")
    assert reloaded.config.encoder_config.num_attention_heads == 4
    torch.testing.assert_close(reloaded.encode(ids)[:, 0], expected)


def test_encoder_from_with_other_shapes_names_them(tmp_path):
    """`--encoder-from` an encoder of another vocabulary: a ValueError naming both shapes, not a size-mismatch
    RuntimeError from load_state_dict."""
    from memory_models.configuration import build_model
    from memory_models.training import train

    build_model(get_preset("autoencoder-tiny", vocab_size=99)).save_pretrained(tmp_path / "ae")
    target = build_model(get_preset("memory-transformer-tiny", vocab_size=128))
    with pytest.raises(ValueError, match=r"embed_tokens.weight: \(99, \d+\) in .* vs \(128, \d+\) in the model"):
        train.copy_encoder(target, str(tmp_path / "ae"))
    with pytest.raises(ValueError, match="vocabulary of 99 tokens, the model 128"):  # building a model for it
        train.with_encoder_of(target.config, str(tmp_path / "ae"))
