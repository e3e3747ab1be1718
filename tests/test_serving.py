"""Serving a memory model: greedy tokens through a server equal `generate`'s, and what cannot be served or reached
is refused in one line.

Every served test runs against two servers: a stand-in of vLLM's (`serving_standin.py`, in the default suite) and
a real vLLM server started with `memory-models serve` (marked `serving`: it needs the vLLM environment that
`scripts/vllm_env.sh` builds, and is skipped with the reason without it; `pytest -m serving` runs only these).
"""

import json
import os
import sys

import pytest
import torch

from cases_memory import memory_config, word_tokenizer
from memory_models.eval.banks import generate as memory_generate
from memory_models.eval.banks.bank import load_memory_bank
from memory_models.eval.serving import serve
from memory_models.eval.serving.client import MemoryModelClient, ServingError, served_model_name
from memory_models.eval.serving.launch import free_port, running, serve_command
from memory_models.eval.serving.rules import serving_refusal
from memory_models.modeling_memory import MemoryForCausalLM
from serving_cases import PROMPT, build, document_inputs, documents, new_tokens, save_with_bank
from serving_standin import StandInServer

SERVERS = [("stand-in", "fixed-ones"), ("stand-in", "variable-learned-positions")]
SERVERS += [pytest.param(("vllm", kind), marks=pytest.mark.serving, id=f"vllm-{kind}")
            for kind in ("fixed-ones", "variable-learned-positions", "small")]


def _vllm_python() -> str:
    try:
        return serve.find_vllm_python()
    except ValueError:
        pytest.skip("no vLLM environment: build it with `bash scripts/vllm_env.sh` (docs/serving.md)")


def local(model, inputs) -> list[int]:
    return memory_generate.generate(model, inputs, new_tokens(model)).tolist()


@pytest.fixture(scope="module", params=SERVERS, ids=lambda p: "-".join(p) if isinstance(p, tuple) else None)
def served(request, tmp_path_factory):
    """A model of the kind asked for, saved with its bank, behind the server asked for; and `generate`'s tokens
    after each document and the prompt."""
    backend, kind = request.param
    python = _vllm_python() if backend == "vllm" else None
    model = build(kind)
    root = tmp_path_factory.mktemp(kind)
    paths = save_with_bank(root, model)
    expected = [local(model, document_inputs(model, doc)) for doc in documents(model)]
    if backend == "stand-in":
        with StandInServer(model) as server:
            yield model, paths, server.url, expected
        return
    port = free_port()
    command = serve_command(paths["model"], port, python, ["--enforce-eager"])
    with running(command, f"http://127.0.0.1:{port}", root / "vllm.log", {"VLLM_CPU_KVCACHE_SPACE": "1"}) as url:
        yield model, paths, url, expected


def test_served_tokens_equal_generate_across_chunk_boundaries(served):
    """Greedy tokens through the server equal `generate`'s, for documents read from the bank and for the same
    tokens encoded on the fly, within a chunk (one new token) and across at least three chunk boundaries."""
    model, paths, url, expected = served
    client = MemoryModelClient(url, model)
    bank = load_memory_bank(paths["bank"], model, paths["tokenizer"])
    for index, doc in enumerate(documents(model)):
        assert len(expected[index]) == new_tokens(model)
        assert client.generate(bank.generation_inputs(f"doc-{index}", PROMPT), new_tokens(model)) == expected[index]
        assert client.generate({"input_ids": torch.tensor([doc + PROMPT])}, new_tokens(model)) == expected[index]
        assert client.generate(document_inputs(model, doc), 1) == expected[index][:1]


def test_streaming_and_many_documents(served):
    """Streamed tokens arrive as they are made (one per event here) and add up to the answer; many documents at
    once (3 in flight) give each one's own answer, in order."""
    model, _, url, expected = served
    client = MemoryModelClient(url, model)
    inputs = [document_inputs(model, doc) for doc in documents(model)]
    pieces = []
    assert client.generate(inputs[2], new_tokens(model), on_tokens=pieces.append) == expected[2]
    assert sum(pieces, []) == expected[2] and len(pieces) >= 4  # at least one event per request (chunk)
    assert client.generate_many(inputs, new_tokens(model), concurrency=3) == expected


def test_generate_command_with_server_prints_what_it_prints_without(served, capsys):
    """`memory-models generate --memories BANK --document ... --server URL` prints `generate`'s text: one document
    (also streamed), and several as JSON lines."""
    model, paths, url, _ = served
    base = ["--model", str(paths["model"]), "--memories", str(paths["bank"]), "--prompt", "w7 w8",
            "--max-new-tokens", str(new_tokens(model))]
    outputs = []
    for extra in ([], ["--server", url], ["--server", url, "--stream"]):
        assert memory_generate.main(base + ["--document", "doc-3"] + extra) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0].split()) == new_tokens(model)
    many = []
    for extra in ([], ["--server", url, "--concurrency", "2"]):
        assert memory_generate.main(base + ["--document", "doc-1", "doc-3"] + extra) == 0
        many.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    assert many[0] == many[1] and [row["document"] for row in many[0]] == ["doc-1", "doc-3"]
    assert many[0][1]["text"] == outputs[0].strip()


def test_another_model_and_a_wrong_width_are_refused(served):
    """Another memory model (same width: by its fingerprint; other width: by the width) is refused before any
    request, and a request of the wrong width is refused by the server with its message, on one line."""
    model, _, url, _ = served
    other = build("fixed-ones", seed=1) if model.config.chunk_size == 4 else build("small", seed=1)
    with pytest.raises(ServingError, match=f"serves another memory model .*{served_model_name(model)}"):
        MemoryModelClient(url, other)
    wider = MemoryForCausalLM(memory_config(decoder_hidden=256, memory_window="rolling"))
    with pytest.raises(ServingError, match=r"reads embeddings of width \d+, but this model's decoder.* 256 wide"):
        MemoryModelClient(url, wider)
    client = MemoryModelClient(url, model)
    with pytest.raises(ServingError, match=r"refused the request \(HTTP 400\): `prompt_embeds` hidden_size 32 does "
                       r"not match the model's hidden_size \d+\.( \(parameter=prompt_embeds\))?$"):
        client.complete(torch.zeros(3, 32), 2, {"temperature": 0.0})


def test_unreachable_slow_and_plain_servers_give_one_line_errors(tmp_path, capsys):
    """A server that is down, one slower than the timeout and one that serves no memory model: each a one-line
    `ServingError` (a `ValueError`: on the command line one line and exit status 2)."""
    model = build("fixed-ones")
    with pytest.raises(ServingError, match=r"no server answers at http://127\.0\.0\.1:\d+ .*memory-models serve"):
        MemoryModelClient(f"http://127.0.0.1:{free_port()}", model)
    with StandInServer(model, delay=1.0) as slow, pytest.raises(ServingError, match="did not answer within 0.2 s"):
        MemoryModelClient(slow.url, model, timeout=0.2)
    with StandInServer(model, names=["llama-3"]) as plain, pytest.raises(ServingError, match=r"serves \['llama-3'\]"):
        MemoryModelClient(plain.url, model)
    from memory_models.eval.cli import main

    model.save_pretrained(tmp_path / "model")
    word_tokenizer().save_pretrained(tmp_path / "model")
    code = main(["generate", "--model", str(tmp_path / "model"), "--prompt", "w7", "--server",
                 f"http://127.0.0.1:{free_port()}"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # (and loading bars)
    assert code == 2 and len(errors) == 1 and errors[0].startswith("memory-models generate: error: no server answers")


def test_what_vllm_cannot_serve_is_refused_before_serving(tmp_path):
    """The masked filler (fixed layout) and a masked-mixer decoder are refused, naming why, by the rule, by
    `memory-models serve` before vLLM is looked for, and by the client; the variable layout is served."""
    masked = MemoryForCausalLM(memory_config(filler="masked"))
    assert "no attention mask over prompt positions" in serving_refusal(masked.config)
    assert "'masked_mixer', which has no vLLM class" in serving_refusal(memory_config(decoder="mixer"))
    assert serving_refusal(memory_config(memory_layout="variable", filler="masked")) is None
    masked.save_pretrained(tmp_path / "masked")
    with pytest.raises(ValueError, match="vLLM cannot serve this memory model .* filler='masked'"):
        serve.main([str(tmp_path / "masked"), "--vllm-python", "/nonexistent/python"])
    with pytest.raises(ValueError, match="filler='masked'"):
        MemoryModelClient("http://127.0.0.1:1", masked)


def test_serve_prints_the_vllm_command(tmp_path, capsys):
    """`memory-models serve --print-command` names the served model by its fingerprint, holds one chunk per request
    (S + L + 1 positions, allowed past the decoder's S + L), sizes the KV cache for 256 such requests unless told
    otherwise and passes unknown options to vLLM; the options it sets itself are refused."""
    model = build("fixed-ones")
    model.save_pretrained(tmp_path / "model")
    assert serve.main([str(tmp_path / "model"), "--vllm-python", sys.executable, "--port", "8123", "--print-command",
                       "--enforce-eager"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 ")
    for part in (f"--served-model-name {served_model_name(model)}", "--max-model-len 9", "--enable-prompt-embeds",
                 "--port 8123", "--dtype float32", "--enforce-eager", f"--model {tmp_path / 'model'}"):
        assert part in line
    # KV cache: 256 requests x 256 positions x 2 layers x (keys, values) x 64 wide x 4 bytes, unless sized by the user
    assert f"--kv-cache-memory-bytes {256 * 256 * 2 * 2 * 64 * 4}" in line or "VLLM_CPU_KVCACHE_SPACE" in os.environ
    assert serve.main([str(tmp_path / "model"), "--vllm-python", sys.executable, "--print-command",
                       "--gpu-memory-utilization=0.5"]) == 0
    assert "--kv-cache-memory-bytes" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="sets .*--served-model-name.* drop --served-model-name=x"):
        serve.main([str(tmp_path / "model"), "--vllm-python", sys.executable, "--served-model-name=x"])
