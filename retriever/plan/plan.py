"""``make_plan(cfg)``: what a run will touch and cost, per stage, before it runs.

Per stage: documents and tokens touched, forwards (embedding: one per embedded document; LM panel:
models x candidate tokens; fastText: one prediction per document and student pass), and the
estimated wall time on this machine, core-hours and GPU-hours, from :class:`~.rates.Rates`.

Corpus size comes from the shards' parquet metadata (row counts, no full read) or a prefix
estimate (:func:`retriever.corpus.size.corpus_size`); mean document length from a prefix of a few
evenly spaced shards. A corpus of at most ``exact_limit`` documents (local) is read in full
instead, so its counts are exact: documents, characters, and which documents the sample keeps.

What is exact and what is an estimate, per figure:

* documents read (score, filter): the corpus size: exact from parquet metadata.
* documents embedded: exact for an exactly-read corpus (the sample's hash on every id), else
  ``docs x fraction`` (binomial: +- 2 sqrt(docs x fraction)).
* confirm: candidates per task = ``min(max_candidates, top_fraction x embedded)``, exact when the
  cap binds; documents given BPB at most the sum over tasks (a document can be a candidate twice);
  tokens = documents x mean tokens (an estimate).
* tokens everywhere: characters / ``chars_per_token`` unless counted.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from retriever.plan.rates import Rates

EMBED_MAX_TOKENS = 256  # the embedder truncates (all-MiniLM-L6-v2: 256 word pieces)
PREFIX_DOCS = 300
PREFIX_SHARDS = 8


@dataclass
class StagePlan:
    """One stage's figures (``None``: does not apply)."""

    stage: str
    docs: int
    tokens: int
    forwards: int | None
    forwards_unit: str
    seconds_here: float
    core_hours: float | None
    gpu_hours: float | None
    exact: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    config: str
    corpus: dict[str, Any]
    stages: list[StagePlan]
    rates: dict[str, Any]
    hardware: dict[str, int]
    ceiling: dict[str, float | None]
    calibration: dict[str, Any] | None = None

    @property
    def core_hours(self) -> float:
        return sum(s.core_hours or 0.0 for s in self.stages)

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours or 0.0 for s in self.stages)

    @property
    def seconds_here(self) -> float:
        return sum(s.seconds_here for s in self.stages)

    def stage(self, name: str) -> StagePlan:
        return next(s for s in self.stages if s.stage == name)

    def over_ceiling(self) -> list[str]:
        """What exceeds the configured ceiling (``[plan] max_core_hours`` / ``max_gpu_hours``)."""
        out = []
        c = self.ceiling
        core, gpu, here = c.get("max_core_hours"), c.get("max_gpu_hours"), c.get("max_hours_here")
        if core is not None and self.core_hours > core:
            out.append(f"{self.core_hours:,.1f} core-hours > max_core_hours {core:,}")
        if gpu is not None and self.gpu_hours > gpu:
            out.append(f"{self.gpu_hours:,.1f} GPU-hours > max_gpu_hours {gpu:,}")
        if here is not None and self.seconds_here / 3600 > here:
            out.append(
                f"{self.seconds_here / 3600:,.1f} h here > max_hours_here {c['max_hours_here']:,}"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["totals"] = {
            "core_hours": self.core_hours,
            "gpu_hours": self.gpu_hours,
            "seconds_here": self.seconds_here,
            "over_ceiling": self.over_ceiling(),
            **self.wall_hours(),
        }
        return d

    def wall_hours(self) -> dict[str, float]:
        """Wall hours on the configured CPU node (cores) and GPU node (GPUs, CPU stages on its
        cores)."""
        cores, gpus = self.hardware["cores"], self.hardware["gpus"]
        cpu_node = sum((s.core_hours or 0.0) for s in self.stages) / cores
        gpu_node = sum(
            (s.gpu_hours / gpus) if s.gpu_hours is not None else (s.core_hours or 0.0) / cores
            for s in self.stages
        )
        return {f"wall_hours_{cores}_cores": cpu_node, f"wall_hours_{gpus}_gpus": gpu_node}


@dataclass
class CorpusProfile:
    shards: list[str]
    docs: int
    exact: bool
    method: str
    mean_chars: float
    chars: float
    texts: list[str] = field(default_factory=list, repr=False)  # the prefix (calibration input)
    ids: list[str] | None = field(default=None, repr=False)  # every id, when read in full
    accepted: int | None = None  # documents the reader accepts (exact read only)
    read_docs_per_s: float | None = None  # measured while reading (one core)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shards": len(self.shards),
            "docs": self.docs,
            "exact": self.exact,
            "method": self.method,
            "mean_chars": round(self.mean_chars, 1),
            "chars": self.chars,
            "accepted": self.accepted,
        }


def profile_corpus(
    paths: list[str],
    reader,
    exact_limit: int = 100_000,
    prefix_docs: int = PREFIX_DOCS,
    fallback=None,
) -> CorpusProfile:
    """Size and mean document length of the corpus (see module docstring).

    Args:
        fallback: a ``[plan]`` section whose ``docs`` / ``mean_chars`` stand in when the corpus
            cannot be listed here (a Hub corpus, offline); without them that is an error.
    """
    from retriever.corpus.sharding import list_shards
    from retriever.corpus.size import corpus_size
    from retriever.data import Rejected
    from retriever.errors import InputError

    try:
        shards = list_shards(paths)
    except InputError as e:
        if fallback is None or not fallback.docs or not fallback.mean_chars:
            raise InputError(
                f"{e} (or give the corpus size to plan with: [plan] docs and mean_chars)"
            ) from e
        n, m = int(fallback.docs), float(fallback.mean_chars)
        return CorpusProfile(
            ["?"] * (fallback.shards or 1),
            n,
            False,
            "[plan] docs and mean_chars: the corpus cannot be listed here",
            m,
            n * m,
        )
    size = corpus_size(shards)
    local = all(os.path.exists(s) for s in shards)
    t0 = time.perf_counter()
    if local and size.docs <= exact_limit:
        ids: list[str] = []
        texts: list[str] = []
        chars, n = 0, 0
        for s in shards:
            for rec in reader.read(s):
                n += 1
                if isinstance(rec, Rejected):
                    continue
                ids.append(rec.id)
                chars += len(rec.text)
                if len(texts) < prefix_docs:
                    texts.append(rec.text)
        return CorpusProfile(
            shards,
            n,
            True,
            f"read in full ({len(shards)} shards)",
            chars / max(1, len(ids)),
            float(chars),
            texts,
            ids,
            len(ids),
            n / max(1e-9, time.perf_counter() - t0),
        )
    # a prefix of a few evenly spaced shards: mean length, no full read
    step = max(1, len(shards) // PREFIX_SHARDS)
    per_shard = max(1, prefix_docs // min(len(shards), PREFIX_SHARDS))
    texts = []
    for s in shards[::step][:PREFIX_SHARDS]:
        k = 0
        for rec in reader.read(s):
            if isinstance(rec, Rejected):
                continue
            texts.append(rec.text)
            k += 1
            if k >= per_shard:
                break
    mean = sum(len(t) for t in texts) / max(1, len(texts))
    rate = len(texts) / max(
        1e-9, time.perf_counter() - t0
    )  # includes opening the shards: a lower bound
    return CorpusProfile(
        shards,
        size.docs,
        size.exact,
        size.method + f"; mean length from {len(texts)} documents "
        f"of {min(len(shards), PREFIX_SHARDS)} shards",
        mean,
        mean * size.docs,
        texts,
        read_docs_per_s=rate,
    )


def make_plan(
    cfg,
    rates: Rates | None = None,
    profile: CorpusProfile | None = None,
    hardware: dict[str, int] | None = None,
    ceiling: dict[str, float | None] | None = None,
    calibration: dict[str, Any] | None = None,
) -> Plan:
    """The plan of a run config (see module docstring).

    Args:
        cfg: a :class:`~retriever.run.config.RunConfig`.
        rates: throughputs (default :class:`Rates`; calibrate with :func:`.rates.calibrate`).
        profile: the corpus profile (default: :func:`profile_corpus` with the run's reader).
        hardware: ``{"cores": 64, "gpus": 8}`` for the node figures (default: ``[plan]``).
        ceiling: ``max_core_hours`` / ``max_gpu_hours`` / ``max_hours_here`` (default: ``[plan]``).
    """
    from retriever.run.job import RunJob
    from retriever.score.job import DocSampler, parse_sample, resolve_sample

    r = rates or Rates()
    ps = getattr(cfg, "plan", None)
    hardware = hardware or {"cores": getattr(ps, "cores", 64), "gpus": getattr(ps, "gpus", 8)}
    ceiling = ceiling or {
        k: getattr(ps, k, None) for k in ("max_core_hours", "max_gpu_hours", "max_hours_here")
    }
    job = RunJob(cfg, progress=False)
    prof = profile or profile_corpus(
        list(cfg.corpus.paths),
        job.corpus_reader(),
        exact_limit=getattr(ps, "exact_limit", 100_000),
        fallback=ps,
    )
    tasks = cfg.task_names
    T = len(tasks)
    cpt = r.chars_per_token
    stages: list[StagePlan] = []

    # -- score: read every document, embed the sampled ones ----------------------------------------
    spec = parse_sample(cfg.score.sample, cfg.run.seed)
    sampler: DocSampler | None = resolve_sample(spec, prof.docs, prof.method) if spec else None
    frac = sampler.fraction if sampler else 1.0
    if prof.ids is not None:
        embedded = sum(1 for i in prof.ids if sampler is None or sampler.keep(i))
        emb_exact = True
    else:
        embedded = int(round(prof.docs * frac))
        emb_exact = sampler is None and prof.exact
    emb_tokens = int(embedded * min(EMBED_MAX_TOKENS, prof.mean_chars / cpt))
    per_core = r.embed_docs_per_s / r.embed_cores
    read_core_s = prof.docs / r.read_docs_per_core_s  # every document is read to decide the sample
    notes = [
        f"reads all {prof.docs:,} documents ({read_core_s / 3600:,.1f} core-hours); embeds "
        + (
            f"a {frac:.6g} sample (seeded hash of the id; {sampler.basis or sampler.requested})"
            if sampler
            else "every one (no [score] sample)"
        )
        + f"; {embedded:,} / {r.embed_docs_per_s_gpu:,.0f} docs/s per GPU"
    ]
    if not emb_exact and sampler:
        notes.append(f"sample size +- {2 * math.sqrt(prof.docs * frac * (1 - frac)):,.0f} (2 sd)")
    full_gpu_h = prof.docs / r.embed_docs_per_s_gpu / 3600
    notes.append(
        f"full scoring (every document) would be {full_gpu_h:,.1f} GPU-hours "
        f"({prof.docs / per_core / 3600:,.0f} core-hours)"
    )
    here_cores = hardware_cores_here()
    stages.append(
        StagePlan(
            "score",
            embedded,
            emb_tokens,
            embedded,
            "embedding forwards (documents)",
            embedded / r.embed_docs_per_s + read_core_s / here_cores,
            (embedded / per_core + read_core_s) / 3600,
            embedded / r.embed_docs_per_s_gpu / 3600,
            emb_exact,
            notes,
        )
    )

    # -- confirm: BPB of the capped candidates under every panel model -----------------------------
    c = cfg.confirm
    top = cfg.score.top_fraction
    per_task = math.ceil((top if top is not None else 1.0) * embedded)
    cap = c.candidates.max_candidates
    cand = min(per_task, cap) if cap is not None else per_task
    bpb_docs = min(embedded, cand * T)
    # the tiny panel is byte-level: a token is a byte (~ a character of web text)
    bpb_tokens = int(bpb_docs * prof.mean_chars / (1.0 if c.panel == "tiny" else cpt))
    if c.panel == "tiny":
        n_models = c.tiny_models
        seconds_here = bpb_tokens * n_models / r.bpb_model_tokens_per_s
        core_h = seconds_here * hardware_cores_here() / 3600
        gpu_h = None
        panel_note = (
            f"tiny panel, {n_models} models trained here ({r.bpb_model_tokens_per_s:,.0f} "
            "tokens/s per model)"
        )
    else:
        n_models = _panel_size(c.panel)
        flop = 2.0 * r.panel_params * bpb_tokens
        core_h = flop / r.cpu_flops_per_core / 3600
        seconds_here = core_h * 3600 / hardware_cores_here()
        gpu_h = flop / r.gpu_flops / 3600
        panel_note = (
            f"panel {os.path.basename(c.panel)}: {n_models} models, "
            f"{r.panel_params / 1e9:.2g}B parameters"
        )
    notes = [
        panel_note,
        f"{cand:,} candidates per task ({'top ' + format(top, 'g') if top is not None else 'all'} "
        f"of {embedded:,}{f', capped at {cap:,}' if cap is not None and per_task > cap else ''}) x "
        f"{T} tasks; random negatives get no BPB",
        f"BPB documents at most {bpb_docs:,} (tasks may share candidates)",
    ]
    stages.append(
        StagePlan(
            "confirm",
            bpb_docs,
            bpb_tokens,
            bpb_tokens * n_models,
            "model-token forwards",
            seconds_here,
            core_h,
            gpu_h,
            cap is not None and per_task >= cap,
            notes,
        )
    )

    # -- optional steps: the perplexity band and the LLM rating ------------------------------------
    if cfg.band is not None:
        stages.append(_band_plan(cfg, r, embedded, prof.mean_chars, cpt))
    if cfg.rate is not None:
        stages.append(_rate_plan(cfg, r, embedded, prof.mean_chars, cpt, T))

    # -- distill: small ----------------------------------------------------------------------------
    rows = int(cand * (1 + c.candidates.negatives_per_positive)) * T
    stages.append(
        StagePlan(
            "distill",
            rows,
            int(rows * prof.mean_chars / cpt),
            None,
            "",
            5.0 * (T + (1 if cfg.distill.multilabel else 0)),
            None,
            None,
            False,
            ["~5 s per student on a few thousand rows (README)"],
        )
    )

    # -- filter: every document, one pass ----------------------------------------------------------
    ml = cfg.distill.multilabel
    factor = r.multilabel_cost_ratio if ml else T * r.per_task_cost_ratio
    fmax = cfg.filter.max_chars
    chars = prof.chars if not fmax else prof.docs * min(prof.mean_chars, fmax)
    core_s = chars * factor / r.filter_chars_per_core_s + prof.docs / r.read_docs_per_core_s
    notes = [
        (
            "one multi-label student: one tokenization for all tasks"
            if ml
            else f"{T} per-task students: {T} fastText passes per document"
        )
        + f" (x{factor:.2f} one task)",
        f"{prof.chars / 1e9:,.3g} G characters read once"
        + (f"; scored: first {fmax:,} of each" if fmax else "")
        + f"; {chars / r.filter_chars_per_core_s * factor / 3600:,.1f} core-hours fastText, "
        f"{prof.docs / r.read_docs_per_core_s / 3600:,.1f} reading",
    ]
    stages.append(
        StagePlan(
            "filter",
            prof.docs,
            int(prof.chars / cpt),
            prof.docs * (1 if ml else T),
            "fastText predictions",
            core_s / hardware_cores_here(),
            core_s / 3600,
            None,
            prof.exact,
            notes,
        )
    )

    # -- dataset: the budget -----------------------------------------------------------------------
    from retriever.dataset import parse_budget

    budget = parse_budget(cfg.dataset.budget)
    stages.append(
        StagePlan(
            "dataset",
            0,
            int(budget),
            None,
            "",
            budget / 4 / 50e6,
            None,
            None,
            False,
            [f"writes at most {budget:,.0f} tokens (LMFlow json + parquet)"],
        )
    )
    return Plan(
        cfg.path,
        prof.to_dict(),
        stages,
        {**r.to_dict()},
        dict(hardware),
        dict(ceiling),
        calibration,
    )


def _band_plan(cfg, r: Rates, embedded: int, mean_chars: float, cpt: float) -> StagePlan:
    """BPB of the scored documents (or ``max_docs`` of them) under one reference model."""
    b = cfg.band
    docs = min(embedded, b.max_docs) if b.max_docs is not None else embedded
    tokens = int(docs * mean_chars / cpt)
    flop = 2.0 * r.band_params * tokens
    core_h = flop / r.cpu_flops_per_core / 3600
    return StagePlan(
        "band",
        docs,
        tokens,
        tokens,
        "model-token forwards",
        core_h * 3600 / hardware_cores_here(),
        core_h,
        flop / r.gpu_flops / 3600,
        False,
        [
            f"one reference model ({os.path.basename(b.model.rstrip('/'))}, "
            f"{r.band_params / 1e6:,.0f}M parameters assumed); "
            + (f"a {docs:,}-document sample" if docs < embedded else "every scored document"),
        ],
    )


def _rate_plan(cfg, r: Rates, embedded: int, mean_chars: float, cpt: float, T: int) -> StagePlan:
    """Rating requests: each task's candidates plus random others, at most ``max_requests``."""
    c = cfg.rate
    top = c.top_fraction if c.top_fraction is not None else cfg.score.top_fraction
    cand = math.ceil((top if top is not None else 1.0) * embedded)
    if c.max_candidates is not None:
        cand = min(cand, c.max_candidates)
    per_task = cand + min(int(round(c.negatives_per_positive * cand)), c.max_random_negatives)
    requests = min(embedded, per_task) * len(c.tasks or [None] * T)
    capped = c.max_requests is not None and requests > c.max_requests
    if capped:
        requests = int(c.max_requests or 0)
    frame = 1800 / cpt  # the rubric frame around the extract
    tokens = int(requests * (min(mean_chars, c.max_chars) / cpt + frame + c.endpoint.max_tokens))
    return StagePlan(
        "rate",
        requests,
        tokens,
        requests,
        "LLM requests",
        requests / r.rate_requests_per_s,
        None,
        None,
        False,
        [
            f"{c.endpoint.model} at {c.endpoint.base_url}: {r.rate_requests_per_s:g} requests/s "
            "assumed (plan rates: rate_requests_per_s); the endpoint's hours are not counted here",
            f"{per_task:,} documents per task ({cand:,} candidates + random others)"
            + (f", capped at max_requests = {c.max_requests:,}" if capped else "")
            + "; reruns ask only what the cache lacks",
        ],
    )


def hardware_cores_here() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


def _panel_size(panel: str) -> int:
    try:
        from retriever.confirm.panel import load_panel

        return len(load_panel(panel).models)
    except Exception:  # a panel that cannot be read here still gets a plan  # noqa: BLE001
        return 8


def format_plan(plan: Plan) -> str:
    """One screen: the corpus, then one line per stage, then totals and the node figures."""
    c = plan.corpus
    h = plan.hardware
    lines = [
        f"plan of {plan.config}",
        f"corpus: {c['docs']:,} documents in {c['shards']:,} shards ({c['method']}); "
        f"mean {c['mean_chars']:,.0f} characters, {c['chars'] / 1e9:,.3g} G characters",
        f"{'stage':<9}{'docs':>15}{'tokens':>19}{'forwards':>17}  "
        f"{'here':>8}{'core-h':>10}{'GPU-h':>8}",
    ]
    for s in plan.stages:
        fw = "-" if s.forwards is None else f"{s.forwards:,}"
        lines.append(
            f"{s.stage:<9}{s.docs:>15,}{s.tokens:>19,}{fw:>17}  {_dur(s.seconds_here):>8}"
            f"{_num(s.core_hours):>10}{_num(s.gpu_hours):>8}" + ("" if s.exact else "  ~")
        )
        for n in s.notes:
            lines.append(f"{'':<11}{n}")
    w = plan.wall_hours()
    cores, gpus = h["cores"], h["gpus"]
    cpu_node, gpu_node = w[f"wall_hours_{cores}_cores"], w[f"wall_hours_{gpus}_gpus"]
    lines.append(
        f"total: {plan.core_hours:,.1f} core-hours, {plan.gpu_hours:,.1f} GPU-hours; "
        f"here {_dur(plan.seconds_here)}; a {cores}-core node: {cpu_node:,.1f} h; "
        f"{gpus} GPUs (+ {cores} cores for the CPU stages): {gpu_node:,.1f} h"
    )
    lines.append(
        "rates: "
        + "; ".join(
            f"{k} {v:,.4g} ({plan.rates['sources'].get(k, '')})"
            for k, v in plan.rates.items()
            if k
            in (
                "embed_docs_per_s",
                "filter_chars_per_core_s",
                "embed_docs_per_s_gpu",
                "multilabel_cost_ratio",
                "read_docs_per_core_s",
            )
        )
    )
    lines.append("~ = estimate (see retriever/plan/plan.py for what is exact)")
    over = plan.over_ceiling()
    if over:
        lines.append("OVER THE CEILING: " + "; ".join(over))
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}" if x < 100 else f"{x:,.0f}"


def _dur(sec: float) -> str:
    if sec < 90:
        return f"{sec:.0f} s"
    if sec < 5400:
        return f"{sec / 60:.0f} min"
    if sec < 86400 * 3:
        return f"{sec / 3600:.1f} h"
    return f"{sec / 86400:,.0f} d"
