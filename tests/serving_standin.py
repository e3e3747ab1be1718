"""A stand-in of vLLM's OpenAI-compatible server of a memory model, for the default suite (CI has no vLLM).

It answers what the client uses, as vLLM 0.32 does (checked against the real server in test_serving.py):
`GET /v1/models` (the served names, `max_model_len`) and `POST /v1/completions` with `prompt_embeds` (base64 of
`torch.save` of `[n, d]`), `max_tokens`, greedy `temperature: 0`, `stop_token_ids` (the stop token is returned)
and `stream` (one server-sent event per token). It decodes as vLLM serves the plugin's model: the decoder over the
prompt's embeddings at positions `0 .. n-1` and then over each generated token's embedding at the next position,
the learned position rows added by position (`decoder_input_embeds`), never past `max_model_len`. A wrong width is
refused with vLLM's message and HTTP 400; `delay` holds every answer back (timeouts).
"""

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from memory_models.eval.serving.client import served_model_name
from memory_models.eval.serving.rules import max_model_len


class StandInServer:
    """`with StandInServer(model) as server:` serves `model` at `server.url` (127.0.0.1, a free port)."""

    def __init__(self, model, names=None, delay: float = 0.0):
        self.model, self.delay = model, delay
        self.names = names or [served_model_name(model)]
        self.max_model_len = max_model_len(model.config)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.http.server_port}"

    def __enter__(self):
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.http.shutdown()
        self.http.server_close()

    @torch.no_grad()
    def tokens(self, embeds: torch.Tensor, max_tokens: int, stop: set):
        """Greedy tokens after prompt embeddings `[n, d]` (the decoder recomputed over the whole sequence)."""
        model = self.model
        for _ in range(min(max_tokens, self.max_model_len - embeds.shape[0])):
            positions = torch.arange(embeds.shape[0])[None]
            hidden = model.decoder.model(inputs_embeds=model.decoder_input_embeds(embeds[None], positions),
                                         position_ids=positions).last_hidden_state
            token = int(model.decoder.lm_head(hidden[0, -1]).argmax())
            yield token
            if token in stop:
                return
            embeds = torch.cat([embeds, model.get_input_embeddings()(torch.tensor([token]))])

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "max_model_len": self.max_model_len}
                                           for name in self.names]}


def _handler(server: StandInServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            time.sleep(server.delay)
            self._send(200, server.models()) if self.path == "/v1/models" else self._send(404, {"detail": "Not Found"})

        def do_POST(self):
            time.sleep(server.delay)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            embeds = torch.load(io.BytesIO(base64.b64decode(body["prompt_embeds"])), weights_only=True)
            width = server.model.config.decoder_config.hidden_size
            if embeds.shape[-1] != width:
                message = (f"`prompt_embeds` hidden_size {embeds.shape[-1]} does not match the model's hidden_size "
                           f"{width}.")
                return self._send(400, {"error": {"message": message, "type": "BadRequestError", "code": 400}})
            tokens = server.tokens(embeds, body["max_tokens"], set(body.get("stop_token_ids") or []))
            if not body.get("stream"):
                return self._send(200, {"choices": [{"index": 0, "token_ids": list(tokens)}]})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for token in tokens:
                self.wfile.write(f"data: {json.dumps({'choices': [{'index': 0, 'token_ids': [token]}]})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

    return Handler
