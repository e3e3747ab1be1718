"""Generation through a memory model served by vLLM (`memory-models serve`): the same tokens as `generate`.

    client = MemoryModelClient("http://127.0.0.1:8000", model)       # checks the server against `model`
    tokens = client.generate(bank.generation_inputs(doc_id, prompt_ids), max_new_tokens=32)
    answers = client.generate_many([inputs_1, inputs_2, ...], max_new_tokens=32, concurrency=8)

`inputs` is what `model.generate(**inputs)` takes for one row: `input_ids` `[1, n]` and optionally `memory_embeds`
`[1, m, d]` (a document's memories from a bank, `MemoryBank.generation_inputs`); without them the complete chunks of
`input_ids` are encoded here, on the fly. The model stays local: its encoder turns finished chunks into memories and
`MemoryModel.decode(..., run_decoder=False)` lays out the decoder's input exactly as `forward` and `generate` do.
Each request is one decoder chunk sent as prompt embeddings (`/v1/completions` with `prompt_embeds`): the slots
(memories, filler) and the chunk's tokens so far. The server generates until the chunk is full plus the token its
last position predicts; then the finished chunk is encoded here, the slots are rebuilt for the next chunk, and the
next request starts from that token. Greedy decoding gives `generate`'s tokens (`tests/test_serving.py`).

Every failure is a `ServingError` (a `ValueError`: one line on the command line): no server at the URL, a timeout,
a server that serves no memory model, another memory model (the served name carries the model's fingerprint,
`served_model_name`), a decoder of another width, or a request the server refused (its own message). `Endpoint` is
the HTTP side, for any OpenAI-compatible completions server (the serving benchmark also sends token ids to a plain
Llama through it); the standard library's `urllib` is all it needs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from memory_models.eval.banks.bank import clean_config, fingerprint, sha256_tensors
from memory_models.eval.serving.rules import SERVED_NAME_PREFIX, check_servable, max_model_len

DEFAULT_TIMEOUT = 120.0


class ServingError(ValueError):
    """Talking to the server failed; the message says why in one line."""


def serving_fingerprint(model) -> str:
    """16 hex digits over everything the served model and its memories depend on: the bank fingerprint's encoder
    fields, the decoder's config and weights (with the filler and any decoder position table) and the slot layout."""
    memory = {k: v for k, v in fingerprint(model).items() if k not in ("dtype", "tokenizer_sha256")}
    config = model.config
    decoder_side = [(f"decoder.{k}", v) for k, v in sorted(model.decoder.state_dict().items())]
    decoder_side += [(name, value) for name, value in model.named_parameters() if not name.startswith(
        ("decoder.", "encoder.", "memory_compress.", "memory_expand.", "memory_projection."))]
    identity = {"memory": memory, "decoder_weights_sha256": sha256_tensors(decoder_side),
                "decoder_config": clean_config(config.decoder_config),
                **{k: getattr(config, k) for k in ("num_memory_slots", "memory_layout", "filler", "no_memory",
                                                    "position_embedding")}}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def served_model_name(model) -> str:
    """The name `memory-models serve` gives the served model: `memory-model-d<decoder width>-<fingerprint>`."""
    return f"{SERVED_NAME_PREFIX}d{model.config.decoder_config.hidden_size}-{serving_fingerprint(model)}"


def _embeds_payload(embeds: torch.Tensor) -> str:
    buffer = io.BytesIO()
    torch.save(embeds.detach().to("cpu", torch.float32).contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode()


class Endpoint:
    """An OpenAI-compatible server (vLLM's): its models and `/v1/completions`, every failure a `ServingError`.

    `timeout` bounds every wait on the server (connecting, and each read: a streamed answer may take longer in all,
    as long as its pieces keep coming)."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT):
        if timeout <= 0:
            raise ValueError(f"the timeout must be positive, got {timeout}")
        self.url, self.timeout = url.rstrip("/"), timeout

    def _open(self, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            raise ServingError(f"the server at {self.url} refused the request (HTTP {error.code}): "
                               f"{_error_message(error.read())}") from None
        except (urllib.error.URLError, OSError) as error:
            raise self._connection_error(error) from None

    def _connection_error(self, error: Exception) -> ServingError:
        reason = getattr(error, "reason", error)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return ServingError(f"the server at {self.url} did not answer within {self.timeout:g} s (timeout)")
        return ServingError(f"no server answers at {self.url} ({reason}): start one with `memory-models serve MODEL`")

    def _read(self, response) -> bytes:
        try:
            with response:
                return response.read()
        except (OSError, urllib.error.URLError) as error:
            raise self._connection_error(error) from None

    def models(self) -> list[dict]:
        """The served models' cards (`id`, `max_model_len`, ...)."""
        return json.loads(self._read(self._open("/v1/models"))).get("data", [])

    def completion(self, body: dict, on_tokens: Callable[[list[int]], None] | None = None) -> list[int]:
        """The new token ids of one `/v1/completions` request (`body`: model, prompt or prompt_embeds, sampling);
        with `on_tokens`, streamed: each server event's tokens go to it as they arrive."""
        body = {**body, "return_token_ids": True}
        if on_tokens is None:
            return list(json.loads(self._read(self._open("/v1/completions", body)))["choices"][0]["token_ids"])
        tokens = []
        response = self._open("/v1/completions", {**body, "stream": True})
        try:
            with response:
                for line in response:
                    payload = line.decode().strip().removeprefix("data: ")
                    if not payload or payload == "[DONE]":
                        continue
                    event = json.loads(payload)
                    if "error" in event:
                        raise ServingError(f"the server at {self.url} failed the request: "
                                           f"{_error_message(payload.encode())}")
                    new = list(event["choices"][0].get("token_ids") or [])
                    tokens += new
                    if new:
                        on_tokens(new)
        except (OSError, urllib.error.URLError) as error:
            raise self._connection_error(error) from None
        return tokens


class MemoryModelClient:
    """Greedy (or sampled) generation of a local memory model whose decoder a vLLM server runs.

    Args:
        url: the server (`http://HOST:PORT`). model: the `MemoryForCausalLM` the server serves (its encoder,
            embeddings and filler build the requests; set to eval mode). timeout: seconds the server may stay silent
            (`Endpoint`).
        eos_token_ids: tokens that end an answer (default: the model's generation config; `[]`: none, as for a
            benchmark that needs every answer to have its full length).
    Raises:
        `ServingError` if the server is unreachable or serves another model; `ValueError` for a model vLLM cannot
        serve token for token (`rules.serving_refusal`).
    """

    def __init__(self, url: str, model, timeout: float = DEFAULT_TIMEOUT, eos_token_ids: Sequence[int] | None = None):
        check_servable(model.config)
        self.endpoint, self.model = Endpoint(url, timeout), model.eval()
        self.url = self.endpoint.url
        if eos_token_ids is None:
            eos = model.generation_config.eos_token_id
            eos_token_ids = [eos] if isinstance(eos, int) else eos or []
        self.eos = set(eos_token_ids)
        self.name = self._served_name()

    def _served_name(self) -> str:
        """The served model's name, after checking that it is this model (width, then fingerprint)."""
        cards = self.endpoint.models()
        names = [card["id"] for card in cards if card["id"].startswith(SERVED_NAME_PREFIX)]
        if not names:
            raise ServingError(f"the server at {self.url} serves {[card['id'] for card in cards]}, not a memory "
                               "model started by `memory-models serve` (its name carries the model's fingerprint)")
        width = self.model.config.decoder_config.hidden_size
        served_width = names[0][len(SERVED_NAME_PREFIX):].split("-")[0]
        if served_width != f"d{width}":
            raise ServingError(f"the server at {self.url} serves a memory model whose decoder reads embeddings of "
                               f"width {served_width[1:]}, but this model's decoder, memories and token embeddings "
                               f"are {width} wide: serve this model, or use the model the server was started with")
        expected = served_model_name(self.model)
        if names[0] != expected:
            raise ServingError(f"the server at {self.url} serves another memory model ({names[0]}) than this one "
                               f"({expected}): serve this model, or use the model the server was started with")
        card = next(card for card in cards if card["id"] == expected)
        if card.get("max_model_len", 0) < max_model_len(self.model.config):
            raise ServingError(f"the server at {self.url} accepts {card.get('max_model_len')} positions per request; "
                               f"a chunk needs {max_model_len(self.model.config)}: start it with `memory-models serve`")
        return expected

    def complete(self, embeds: torch.Tensor, max_tokens: int, sampling: dict,
                 on_tokens: Callable[[list[int]], None] | None = None) -> list[int]:
        """One request over prompt embeddings `[n, d]`: its new tokens (streamed to `on_tokens` as they arrive when
        given), ending at `max_tokens` or at an end-of-sequence token (returned, as `generate` does)."""
        body = {"model": self.name, "prompt_embeds": _embeds_payload(embeds), "max_tokens": max_tokens,
                "ignore_eos": True, "stop_token_ids": sorted(self.eos), **sampling}
        return self.endpoint.completion(body, on_tokens)

    # ------------------------------------------------------------------ chunks
    def chunk_embeds(self, ids: Sequence[int], memories: torch.Tensor | None):
        """The prompt embeddings of the last chunk of `ids` after `memories`, as the decoder reads it.

        Complete chunks of `ids` but the last are encoded into memories first (as `forward` does). Returns the
        embeddings `[n, d]` (slots, then the chunk's tokens), every memory so far `[1, m, d]` (or `None`) and the
        last chunk's token ids.
        """
        model, chunk = self.model, self.model.config.chunk_size
        inputs = model.decode(torch.tensor([list(ids)]), memory_embeds=memories, run_decoder=False).decoder_inputs
        last = inputs.num_chunks - 1
        keep = inputs.mask[last]  # the slots the chunk reads (all S in the fixed layout) and its real tokens
        positions = inputs.positions[min(last, inputs.positions.shape[0] - 1)][keep]
        if not torch.equal(positions, torch.arange(len(positions))):  # vLLM numbers a prompt's embeddings 0, 1, ...
            raise ValueError(f"the decoder reads this chunk at positions {positions.tolist()}, not 0..n-1: vLLM "
                             "cannot serve it token for token")
        memories = inputs.memory_embeds if inputs.memory_embeds.shape[1] else None
        return inputs.embeds[last][keep], memories, list(ids[last * chunk:])

    @torch.no_grad()
    def generate(self, inputs: dict, max_new_tokens: int, do_sample: bool = False, seed: int = 0,
                 on_tokens: Callable[[list[int]], None] | None = None) -> list[int]:
        """The new tokens of one row (`inputs` as for `model.generate`), `max_new_tokens` at most: one request per
        chunk, the finished chunks encoded here in between. `on_tokens` receives them as the server streams them."""
        if inputs["input_ids"].shape[0] != 1:
            raise ValueError(f"generate() takes one row, got {inputs['input_ids'].shape[0]}: use generate_many")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens}")
        config, new = self.model.config, []
        embeds, memories, chunk_ids = self.chunk_embeds(inputs["input_ids"][0].tolist(), inputs.get("memory_embeds"))
        while True:
            room = config.chunk_size - len(chunk_ids) + 1  # fill the chunk, plus the token its last position predicts
            want = min(room, max_new_tokens - len(new))
            got = self.complete(embeds, want, self._sampling(do_sample, seed + len(new)), on_tokens)
            new += got
            if len(got) < want and not self.eos.intersection(got):
                raise ServingError(f"the server at {self.url} returned {len(got)} of the {want} tokens asked for")
            if self.eos.intersection(got) or len(new) >= max_new_tokens:
                return new
            finished = torch.tensor([chunk_ids + got[:-1]])  # a full chunk: its memory, then the next chunk
            if not config.no_memory:
                memories = torch.cat([m for m in (memories, self.model.encode(finished)) if m is not None], dim=1)
            embeds, memories, chunk_ids = self.chunk_embeds(got[-1:], memories)

    def generate_many(self, inputs: Sequence[dict], max_new_tokens: int, concurrency: int = 8, **kwargs) -> list:
        """`generate` for many rows (documents) at once, `concurrency` requests in flight; answers in input order."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency}")
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(lambda row: self.generate(row, max_new_tokens, **kwargs), inputs))

    def _sampling(self, do_sample: bool, seed: int) -> dict:
        """Greedy: temperature 0. Sampling: the model's generation config (top-k, top-p), seeded per request."""
        if not do_sample:
            return {"temperature": 0.0}
        config = self.model.generation_config
        return {"temperature": config.temperature or 1.0, "top_k": config.top_k or 0, "top_p": config.top_p or 1.0,
                "seed": seed}


def _error_message(raw: bytes) -> str:
    """The server's error message (vLLM: `{"error": {"message": ...}}`), on one line."""
    try:
        error = json.loads(raw)
        message = error.get("error", error)
        message = message.get("message", message) if isinstance(message, dict) else message
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace")
    return " ".join(str(message).split()) or "no message"
