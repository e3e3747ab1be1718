"""LoRA from the CLI (`train --lora-r ...`) and the PEFT Trainer integration on a converted pretrained decoder."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from memory_models.configuration import build_model, get_preset
from memory_models.conversion.export_to_hub import export_model, main as export_main
from memory_models.conversion.pretrained_decoder import convert
from pretrained_lookalike import make_decoder_folder
from memory_models.training import train
from memory_models.training.job import TrainJob
from memory_models.training.objectives.batch import ObjectiveCollator
from memory_models.training.trainer import RoutingCollator, forward_arguments
from tokenizer_loading import assert_tokenizer_loads_quietly

peft = pytest.importorskip("peft")

RUN = ["--dataset", "records", "--train-documents", "32", "--eval-documents", "4", "--batch-size", "2",
       "--context", "16", "--objective", "copy", "--learning-rate", "5e-3", "--eval-steps", "100", "--seed", "0"]


@pytest.mark.parametrize("task_type", [None, "CAUSAL_LM"])
def test_peft_model_gets_every_batch_key_and_the_same_combined_loss(task_type):
    """The collator keeps stream_ids for a PeftModel (with or without task_type) and the wrapped model's
    combined loss equals the unwrapped model's at step 0 (weighted streams, so a dropped key would show)."""
    torch.manual_seed(0)
    model = build_model(get_preset("memory-transformer-tiny", clm_loss_weight=1.0, copy_loss_weight=0.25)).eval()
    collator = ObjectiveCollator.from_config("combined", model.config, max_length=16)
    features = [{"input_ids": torch.randint(4, 99, (16,)).tolist()} for _ in range(2)]
    batch = collator(features)
    with torch.no_grad():
        expected = model(**batch).loss
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type=task_type))
    routed = RoutingCollator({"combined": collator}, "combined", keep=forward_arguments(lora))(features)
    assert set(routed) == set(batch) and "stream_ids" in routed
    with torch.no_grad():
        got = lora(**routed).loss
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with torch.no_grad():
        unweighted = model(**{k: v for k, v in batch.items() if k != "stream_ids"}).loss
    assert not torch.isclose(unweighted, expected)  # stream_ids matter for this batch


@pytest.fixture(scope="module")
def converted_folder(tmp_path_factory):
    """A converted Llama look-alike with a frozen encoder, a memory bottleneck and a learned filler."""
    root = tmp_path_factory.mktemp("lora")
    source = make_decoder_folder(root / "llama", "llama")
    torch.manual_seed(0)
    model, tokenizer = convert(source, encoder_preset="autoencoder-tiny", chunk_size=8, num_memory_slots=4,
                               filler="learned", compression=2, freeze_encoder=True, dtype="float32")
    return export_model(model, root / "memory", tokenizer)


def _run(folder, output, *extra):
    job = TrainJob.from_argv(["--init-from", str(folder), "--tokenizer", str(folder), "--output-dir",
                              str(output), *RUN, "--lora-r", "4", "--lora-alpha", "8", *extra])
    return train.run(job)


def test_lora_cli_trains_adapters_and_memory_parts_then_merges(converted_folder, tmp_path):
    """--lora-r: LoRA on the decoder's projections; the bottleneck, learned filler and learned decoder positions
    train, the frozen encoder and everything else stay bit-identical; final/ is the merged Hub model, adapter/ sits
    beside it, and `export --model adapter/` gives the same merged weights."""
    output = tmp_path / "run"
    summary = _run(converted_folder, output, "--max-steps", "3", "--save-steps", "3")
    trainable = summary["config"]["trainable_parameters"]
    assert 0 < trainable < summary["config"]["parameters"] / 4
    before, after = load_file(converted_folder / "model.safetensors"), load_file(output / "final" / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert {"filler", "memory_compress.weight", "memory_expand.weight", "decoder_position_embeddings.weight"} <= changed
    assert any(".self_attn.q_proj." in key for key in changed) and any(".mlp.down_proj." in key for key in changed)
    allowed = ("filler", "memory_", "decoder_position_embeddings", ".q_proj.", ".k_proj.", ".v_proj.", ".o_proj.", ".gate_proj.", ".up_proj.",
               ".down_proj.")
    assert all(key.startswith("decoder.") or not key.startswith("encoder.") for key in changed)
    assert all(any(part in key for part in allowed) for key in changed), changed
    assert (output / "adapter" / "adapter_config.json").exists() and (output / "adapter" / "trainable_extras.safetensors").exists()
    for folder in (output / "adapter", output / "final"):
        assert_tokenizer_loads_quietly(folder)
    assert (output / "checkpoint-3" / "adapter_model.safetensors").exists()
    assert json.loads((output / "final" / "config.json").read_text())["auto_map"]
    export_main(["--model", str(output / "adapter"), "--output", str(tmp_path / "merged")])
    merged = load_file(tmp_path / "merged" / "model.safetensors")
    for key in after:
        torch.testing.assert_close(merged[key], after[key], msg=key)


def test_lora_resume_is_exact_and_export_refuses_without_base(converted_folder, tmp_path):
    """A LoRA run resumed from its step-2 adapter checkpoint ends with the same weights as an uninterrupted run;
    exporting an adapter whose base model is gone fails clearly and writes nothing."""
    straight = tmp_path / "straight"
    _run(converted_folder, straight, "--max-steps", "4", "--save-steps", "2")
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    summary = _run(converted_folder, resumed, "--max-steps", "4", "--save-steps", "2", "--resume")
    assert summary["resumed_from"] == str(resumed / "checkpoint-2")
    expected, got = load_file(straight / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    adapter = tmp_path / "orphan"
    shutil.copytree(straight / "adapter", adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="--base-model DIR"):
        export_main(["--model", str(adapter), "--output", str(tmp_path / "nothing")])
    assert not (tmp_path / "nothing").exists()
