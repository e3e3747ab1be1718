"""lm-eval's stock HFLM drives MemoryForCausalLM: loglikelihood and generate_until over multi-chunk contexts."""

import pytest
import torch

from cases_memory import VOCAB, memory_config, word_tokenizer, words
from memory_models.modeling_memory import MemoryForCausalLM

lm_eval_hf = pytest.importorskip("lm_eval.models.huggingface")
from lm_eval.api.instance import Instance  # noqa: E402


@pytest.fixture(scope="module")
def harness():
    torch.manual_seed(0)
    model = MemoryForCausalLM(memory_config(filler="ones")).eval()
    tokenizer = word_tokenizer()
    return model, tokenizer, lm_eval_hf.HFLM(pretrained=model, tokenizer=tokenizer, batch_size=2)


def requests(kind, arguments):
    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(arguments)]


def test_max_length_is_model_context(harness):
    """HFLM reads the effective context (num_memory_slots * chunk_size) from the config."""
    model, _, lm = harness
    assert lm.max_length == model.config.max_position_embeddings == 16


def test_loglikelihood_matches_direct_logits(harness):
    """HFLM's loglikelihoods (right-padded batches, no mask) equal log-softmax sums of the model's own logits."""
    model, tokenizer, lm = harness
    generator = torch.Generator().manual_seed(3)
    pairs = []
    for context_len, continuation_len in [(9, 2), (13, 3), (5, 1), (11, 4), (3, 6)]:
        ids = torch.randint(3, VOCAB, (context_len + continuation_len,), generator=generator).tolist()
        pairs.append((words(ids[:context_len]), " " + words(ids[context_len:])))
    results = lm.loglikelihood(requests("loglikelihood", pairs))
    for (context, continuation), (logprob, is_greedy) in zip(pairs, results):
        context_ids = tokenizer(context)["input_ids"]
        continuation_ids = tokenizer(continuation)["input_ids"]
        full = torch.tensor([context_ids + continuation_ids])
        with torch.no_grad():
            log_probs = model(full).logits.log_softmax(-1)[0]
        positions = torch.arange(len(context_ids) - 1, full.shape[1] - 1)
        picked = log_probs[positions, torch.tensor(continuation_ids)]
        assert logprob == pytest.approx(picked.sum().item(), abs=1e-4)
        assert is_greedy == bool((log_probs[positions].argmax(-1) == torch.tensor(continuation_ids)).all())


def test_generate_until_matches_generate(harness):
    """HFLM's generate_until (left-padded batches) returns the model's own greedy continuation of each context."""
    model, tokenizer, lm = harness
    generator = torch.Generator().manual_seed(5)
    contexts = [words(torch.randint(3, VOCAB, (n,), generator=generator).tolist()) for n in (9, 4, 10)]
    options = {"until": ["w7"], "max_gen_toks": 6, "do_sample": False}
    outputs = lm.generate_until(requests("generate_until", [(c, dict(options)) for c in contexts]))
    for context, output in zip(contexts, outputs):
        ids = torch.tensor([tokenizer(context)["input_ids"]])
        generated = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                   pad_token_id=tokenizer.pad_token_id)
        expected = tokenizer.decode(generated[0, ids.shape[1] :], skip_special_tokens=True).split("w7")[0]
        assert output == expected
