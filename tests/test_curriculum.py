"""The paper's curriculum end to end at tiny scale, through the `memory-models train` command:

    autoencoder -> blank copy (frozen encoder) -> copy -> combined

The frozen encoder must stay bit-identical to the autoencoder's encoder through every stage, and every
stage's checkpoint must load.
"""

import torch

from memory_models.training import train
from memory_models.eval.cli import main as cli_main

TINY = ["--train-documents", "48", "--eval-documents", "8", "--batch-size", "2", "--max-steps", "3",
        "--eval-steps", "3", "--learning-rate", "1e-3"]


def encoder_state(folder):
    return {k: v.clone() for k, v in train.find_encoder(train.load_pretrained(str(folder))).state_dict().items()}


def test_curriculum_keeps_frozen_encoder_bit_identical(tmp_path):
    """AE -> blank_copy (--encoder-from --freeze-encoder) -> copy (--init-from) -> combined (--init-from), on a
    tokenizer of its own: the --init-from stages take their checkpoint's tokenizer without being told."""
    tokenizer = tmp_path / "tokenizer"
    assert cli_main(["tokenizer", "--vocab-size", "300", "--num-documents", "48", "--output", str(tokenizer)]) == 0
    stages = [
        ("ae", ["--preset", "autoencoder-tiny", "--tokenizer", str(tokenizer), "--objective", "autoencode",
                "--context", "8"]),
        ("blank", ["--preset", "memory-transformer-tiny", "--tokenizer", str(tokenizer), "--encoder-from",
                   str(tmp_path / "ae" / "final"), "--freeze-encoder", "--objective", "blank_copy"]),
        ("copy", ["--init-from", str(tmp_path / "blank" / "final"), "--objective", "copy"]),
        ("combined", ["--init-from", str(tmp_path / "copy" / "final"), "--objective", "combined"]),
    ]
    for name, options in stages:
        assert cli_main(["train", *options, "--output-dir", str(tmp_path / name), *TINY]) == 0
    reference = encoder_state(tmp_path / "ae" / "final")
    assert reference, "the autoencoder has an encoder"
    for name, _ in stages[1:]:
        for folder in (tmp_path / name / "final", tmp_path / name / "checkpoint-3"):
            model = train.load_pretrained(str(folder))
            assert model.config.freeze_encoder is True
            assert not any(p.requires_grad for p in train.find_encoder(model).parameters())
            state = train.find_encoder(model).state_dict()
            assert state.keys() == reference.keys(), folder
            for key, value in reference.items():
                torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=f"{folder}: {key}")
    assert len(train.load_tokenizer(str(tmp_path / "combined" / "final"))) == len(train.load_tokenizer(str(tokenizer)))
    # the decoder did train (the curriculum is not a no-op)
    first = train.load_pretrained(str(tmp_path / "blank" / "final")).decoder.state_dict()
    last = train.load_pretrained(str(tmp_path / "combined" / "final")).decoder.state_dict()
    assert any(not torch.equal(first[k], last[k]) for k in first)
