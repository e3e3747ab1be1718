"""Serving a memory model with vLLM: its decoder behind an OpenAI-compatible server, its memories sent as prompt
embeddings (`rules`: what can be served; `vllm_plugin` / `vllm_model`: the vLLM side; `client`: the requests)."""
