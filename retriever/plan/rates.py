"""The rates a plan multiplies by: measured here by a short calibration, passed in, or defaults.

Every rate carries where it came from (``sources``), and the plan prints it: a figure from a
calibration on this machine, from a ``--rates`` JSON file (e.g. a benchmark's ``--json`` on a GPU
machine), or a default with its reference. GPU rates are never measured here (no GPU).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from retriever.errors import ConfigError
from retriever.io import read_json_object

DEFAULT_SOURCES = {
    "embed_docs_per_s": "README cost table (bench_score.py: OpenVINO bf16, 2 shared cores)",
    "embed_cores": "this machine's cores during that measurement",
    "embed_docs_per_s_gpu": "assumed, not measured here: ~20k docs/s per H100 (MiniLM-L6 fp16, "
    "issue 10)",
    "filter_chars_per_core_s": "README cost table (bench_filter.py, one process, per-task student)",
    "multilabel_cost_ratio": "bench_filter.py --section tasks: fastText scoring of 4 tasks with "
    "one multi-label student / 1 task, 1.30x (fastest of 3, 2 cores at load ~30)",
    "per_task_cost_ratio": "scripts/bench_filter.py --section tasks (4 per-task students / 1 task)",
    "bpb_model_tokens_per_s": "README cost table (bench_bpb.py: tiny panel, per model, CPU)",
    "cpu_flops_per_core": "assumed: 50 GFLOP/s per core effective (AVX-512 bf16 at ~1/3 of peak)",
    "gpu_flops": "assumed: 250 TFLOP/s effective per GPU (H100 bf16 at ~1/4 of peak, small models)",
    "panel_params": "configs/panels/small-open.toml: 8 models, ~2.1B parameters in all",
    "chars_per_token": "GPT-2 on English web text (~4 characters a token)",
    "read_docs_per_core_s": "assumed: parquet/jsonl records parsed into documents by one core",
    "band_params": "assumed: a GPT-2-small-sized reference model for the perplexity band (124M)",
    "rate_requests_per_s": "assumed: an endpoint answering 4 rating requests/s (e.g. vLLM, a 7B "
    "model, --concurrency 8, ~2 s an answer); bench_rate.py measures the client only",
}


@dataclass(frozen=True)
class Rates:
    """Throughputs the plan uses (see module docstring; ``sources`` says where each came from).

    Attributes:
        embed_docs_per_s: documents embedded per second on this machine, all ``embed_cores``.
        embed_cores: cores the embedding rate used (per-core rate = rate / cores).
        embed_docs_per_s_gpu: documents embedded per second on one GPU.
        filter_chars_per_core_s: characters one core scores with one fastText student per second.
        multilabel_cost_ratio: cost of the one-pass filter for every task / one task.
        per_task_cost_ratio: cost of per-task students for every task / one task (per task: ~1).
        bpb_model_tokens_per_s: tokens per second through one tiny-panel model here (all cores).
        cpu_flops_per_core, gpu_flops: effective FLOP/s for a real (Hub) panel's forwards.
        panel_params: total parameters of a real panel (2 FLOP per parameter per token).
        chars_per_token: characters per token when tokens are estimated from characters.
        read_docs_per_core_s: documents one core reads and parses (every stage that reads the
            whole corpus pays it: scoring reads every document to decide the sample).
        band_params: parameters of the perplexity band's reference model.
        rate_requests_per_s: rating requests the LLM endpoint answers per second.
    """

    embed_docs_per_s: float = 31.6
    embed_cores: int = 2
    embed_docs_per_s_gpu: float = 20_000.0
    filter_chars_per_core_s: float = 5.0e6
    multilabel_cost_ratio: float = 1.3
    per_task_cost_ratio: float = 1.0
    bpb_model_tokens_per_s: float = 28_500.0
    cpu_flops_per_core: float = 50e9
    gpu_flops: float = 250e12
    panel_params: float = 2.1e9
    chars_per_token: float = 4.0
    read_docs_per_core_s: float = 50_000.0
    band_params: float = 1.24e8
    rate_requests_per_s: float = 4.0
    sources: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SOURCES), compare=False)

    def with_values(self, values: dict[str, Any], source: str) -> Rates:
        """These rates with ``values`` replaced, each marked as coming from ``source``.

        Raises:
            ConfigError: an unknown rate name or a value that is not a positive number.
        """
        known = {f.name for f in fields(self)} - {"sources"}
        bad = sorted(set(values) - known)
        if bad:
            raise ConfigError(f"unknown rate(s) {bad}; known: {sorted(known)}")
        for k, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ConfigError(f"rate {k} must be a positive number, got {v!r}")
        src = {**self.sources, **dict.fromkeys(values, source)}
        return replace(self, **values, sources=src)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def load_rates(path: str | os.PathLike, base: Rates | None = None) -> Rates:
    """Rates from a JSON file (``{"embed_docs_per_s_gpu": 18000, ...}``, or ``{"rates": {...}}``).

    Raises:
        ConfigError: the file is missing, not JSON, or names an unknown rate.
    """
    p = Path(path)
    data = read_json_object(p, "rates file", "rates", "an object of rate -> number", ConfigError)
    sources = data.get("sources")
    rates = base or Rates()
    if isinstance(sources, dict):
        # a plan's --json: take only what it measured or was given, keeping where it came from
        for k, v in data.items():
            src = str(sources.get(k, ""))
            if k != "sources" and src.startswith(("measured", "passed in")):
                rates = rates.with_values({k: v}, f"{src}, via {p.name}")
        return rates
    return rates.with_values(data, f"passed in ({p.name})")


def calibrate(
    docs: list[str],
    rates: Rates,
    model: str | None = None,
    embed: bool = True,
    filter_: bool = True,
    device: str | None = None,
) -> tuple[Rates, dict[str, Any]]:
    """Measure the embedding and fastText rates on ``docs`` (a few hundred of the configured
    corpus).

    The embedder is the run's (loaded once, timed after a warm-up batch); fastText is a throwaway
    two-label student trained on the same documents (its speed depends on the text, not the labels).

    Returns:
        ``(rates, info)``: the rates with the measured ones replaced; what was measured, on what.
    """
    info: dict[str, Any] = {"docs": len(docs), "chars": sum(len(d) for d in docs)}
    measured: dict[str, float] = {}
    if not docs:
        return rates, info
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    if embed:
        from retriever.embed import load_embedder

        emb = load_embedder(model, device=device) if model else load_embedder(device=device)
        emb.encode(docs[: min(16, len(docs))])  # warm-up: first call compiles / allocates
        t0 = time.perf_counter()
        emb.encode(docs)
        dt = time.perf_counter() - t0
        measured["embed_docs_per_s"] = len(docs) / dt
        measured["embed_cores"] = cores
        info["embed_seconds"] = round(dt, 3)
    if filter_:
        measured["filter_chars_per_core_s"] = _fasttext_rate(docs)
    n = len(docs)
    return rates.with_values(
        measured, f"measured here (calibration on {n} documents, {cores} cores)"
    ), info


def _fasttext_rate(docs: list[str], repeat: int = 3) -> float:
    """Characters per second one core scores with a fastText student like ``retriever
    distill``'s."""
    import tempfile

    from retriever._deps import require
    from retriever.distill.labels import fasttext_text
    from retriever.distill.train import DistillConfig

    fasttext = require("fasttext")
    lines = [fasttext_text(d) for d in docs]
    with tempfile.TemporaryDirectory(prefix="plan-ft-") as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text(
            "".join(
                f"__label__{'positive' if i % 2 else 'negative'} {x}\n" for i, x in enumerate(lines)
            ),
            encoding="utf-8",
        )
        args = {**DistillConfig(epoch=1).fasttext_args()}
        model = fasttext.train_supervised(input=str(path), **args)
    chars = sum(len(x) for x in lines)
    best = float("inf")
    for _ in range(repeat):  # fastest of a few: other jobs on the machine only slow it down
        t0 = time.perf_counter()
        model.predict(lines, k=-1)
        best = min(best, time.perf_counter() - t0)
    return chars / best
