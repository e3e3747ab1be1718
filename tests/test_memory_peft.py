"""PEFT on the memory model's decoder: LoRA attaches, trains only adapters, saves/loads and merges."""

import pytest
import torch

from memory_models.configuration import build_model, get_preset

peft = pytest.importorskip("peft")


def test_lora_on_decoder_attention(tmp_path):
    """LoRA targets the decoder's q/v projections; merged weights reproduce the adapted model."""
    torch.manual_seed(0)
    model = build_model(get_preset("memory-transformer-tiny"))
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=r".*decoder.*\.(q_proj|v_proj)"))
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".decoder." in n for n in trainable)
    ids = torch.randint(2, 99, (2, 20))
    lora.train()
    optimizer = torch.optim.SGD([p for p in lora.parameters() if p.requires_grad], lr=0.5)
    lora(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    lora.eval()
    with torch.no_grad():
        adapted = lora(input_ids=ids).logits
    lora.save_pretrained(tmp_path)
    torch.manual_seed(0)
    base = build_model(get_preset("memory-transformer-tiny"))
    reloaded = peft.PeftModel.from_pretrained(base, tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, adapted)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted, rtol=1e-4, atol=1e-5)
