"""Proxy training: a small causal LM trained on a selection, to measure what the selection teaches.

``train_proxy(data, out, config)`` trains a transformers model (from scratch with a byte-level
tokenizer offline, or continued pretraining of a checkpoint such as ``data4elm/Llama-400M-12L``)
for a fixed token budget, seeded, resumable after a kill; :mod:`retriever.evaluation` scores it.
"""

from retriever.proxy.config import ProxyConfig
from retriever.proxy.train import ProxyResult, lr_at, train_proxy

__all__ = ["ProxyConfig", "ProxyResult", "lr_at", "train_proxy"]
