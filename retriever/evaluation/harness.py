"""Score a causal LM on the ELMB tasks with lm-evaluation-harness, plus bits per byte.

``evaluate_model(checkpoint, tasks, data)`` runs ``lm_eval.simple_evaluate`` with its HF model
wrapper (``HFLM``) on the shipped task configs (:mod:`retriever.evaluation.elmb`), loaded through
``lm_eval.tasks.TaskManager(include_path=...)``: the challenge's YAMLs as they are for the Hub
datasets, or a generated YAML that ``include``\\ s one and only swaps in a local jsonl file. It adds
``bpb``: bits per byte of each task's records (prompt + right answer), computed by
:class:`retriever.confirm.bpb.LMScorer` (lm-eval's definition), which moves at proxy scale where
accuracy is still at chance.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

from retriever._deps import require
from retriever.errors import ConfigError, InputError
from retriever.evaluation.elmb import (
    TASK_DIR,
    TASKS,
    ElmbTask,
    default_eval_dir,
    get_task,
    read_mc_records,
    record_text,
)

log = logging.getLogger(__name__)

DEFAULT_TASKS = tuple(TASKS)
METRICS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")


def resolve_data(tasks: list[str], data: Any) -> dict[str, str | None]:
    """Task -> local jsonl path, or ``None`` for the task's Hub dataset.

    ``data``: ``None`` (the local sets of :func:`~retriever.evaluation.elmb.local_eval_sets` when
    the shared data is found, else the Hub), ``"hub"``, a folder of ``<task>.jsonl`` files, or a
    ``{task: path}`` mapping (tasks it leaves out follow the ``None`` rule).

    Raises:
        InputError: a named file or folder does not exist.
    """
    out: dict[str, str | None] = {}
    mapping: dict[str, str] = {}
    if isinstance(data, dict):
        mapping = {get_task(k).name: str(v) for k, v in data.items()}
    elif data not in (None, "hub"):
        folder = Path(data)
        if not folder.is_dir():
            raise InputError(f"evaluation data {folder} is not a folder of <task>.jsonl files")
        mapping = {
            t: str(folder / f"{t}.jsonl") for t in tasks if (folder / f"{t}.jsonl").is_file()
        }
    local: dict[str, Path] | None = None
    for t in tasks:
        if t in mapping:
            if not Path(mapping[t]).is_file():
                raise InputError(f"evaluation file for {t!r}: {mapping[t]} does not exist")
            out[t] = mapping[t]
        elif data == "hub":
            out[t] = None
        else:
            if local is None:
                local = _default_local()
            out[t] = str(local[t]) if local else None
    return out


def _default_local() -> dict[str, Path] | None:
    from retriever.evaluation.elmb import local_eval_sets
    from retriever.holdout import default_data_dir

    if not default_data_dir().is_dir():
        return None
    return local_eval_sets(default_eval_dir())


def write_task_yamls(files: dict[str, str | None], folder: Path) -> dict[str, str]:
    """Harness task name of each task; local files get a YAML in ``folder`` including ours."""
    names = {}
    for t, path in files.items():
        task = get_task(t)
        if path is None:
            names[t] = task.harness
            continue
        name = f"{task.harness}_local"
        doc = {
            "include": str(task.yaml),
            "task": name,
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {"train": str(Path(path).resolve())}},
        }
        import yaml  # lm-eval depends on PyYAML

        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        names[t] = name
    return names


def _load_model(checkpoint, device: str):
    torch = require("torch")
    transformers = require("transformers")
    from retriever.confirm.bpb import resolve_dtype

    transformers.utils.logging.disable_progress_bar()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(checkpoint))
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(checkpoint), dtype=resolve_dtype("auto", device)
        )
    except (OSError, ValueError) as e:
        raise InputError(
            f"cannot load model {checkpoint} ({type(e).__name__}: {e}); give a "
            "folder with config.json, weights and a tokenizer"
        ) from e
    model.to(device).eval()
    del torch
    return model, tok


def fitting_records(
    recs: list[dict[str, Any]], tok, ctx: int | None
) -> tuple[list[dict[str, Any]], int]:
    """The records whose every choice fits the model's context, and how many were left out.

    lm-eval asserts when a continuation alone is longer than the context (one ELMB
    FunctionCalling choice is 268 bytes: too long for a 256-byte proxy), so such records are
    skipped and counted (``skipped_too_long``) instead of failing the whole evaluation.
    """
    if ctx is None:
        return recs, 0
    keep = []
    for rec in recs:
        lens = [
            len(tok(" " + str(c), add_special_tokens=False)["input_ids"]) for c in rec["choices"]
        ]
        if max(lens) <= ctx:
            keep.append(rec)
    return keep, len(recs) - len(keep)


def _bpb(checkpoint, texts: list[str], device: str) -> float:
    from retriever.confirm.bpb import LN2, LMScorer
    from retriever.confirm.panel import PanelModel

    scorer = LMScorer(PanelModel(name="proxy", path=str(checkpoint)), device=device)
    res = scorer.bits_per_byte(texts)
    ok = [i for i, s in enumerate(res.status) if s == "ok"]
    if not ok:
        return float("nan")
    return float(res.nats[ok].sum() / LN2 / res.n_bytes[ok].sum())


def _hub_texts(task: ElmbTask, limit: int | None) -> list[str]:
    datasets = require("datasets")
    ds = datasets.load_dataset(task.hub, split="train")
    n = len(ds) if limit is None else min(limit, len(ds))
    return [record_text(ds[i], task) for i in range(n)]


def evaluate_model(
    checkpoint: str | os.PathLike,
    tasks: list[str] | tuple[str, ...] = DEFAULT_TASKS,
    data: Any = None,
    limit: int | None = None,
    device: str = "auto",
    batch_size: int = 32,
    bpb: bool = True,
) -> dict[str, dict[str, float]]:
    """Score ``checkpoint`` on ELMB tasks through lm-evaluation-harness.

    Args:
        checkpoint: an HF model folder (tokenizer beside it) or Hub id.
        tasks: our names (``function-calling``, ``reasoning``, ``roleplay``, ``rag``) or the
            harness's (``elmb_functioncalling``, ...).
        data: where the records come from; see :func:`resolve_data`.
        limit: score only the first ``limit`` records of each task.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``; bf16 weights on CUDA.
        batch_size: lm-eval batch size.
        bpb: also compute bits per byte of each task's records (prompt + right answer).

    Returns:
        ``{task: {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "bpb", "n",
        "skipped_too_long"}}`` (records whose longest choice exceeds the model's context are
        skipped and counted: lm-eval cannot score them).

    Raises:
        ConfigError: unknown task or bad limit.
        InputError: unreadable model or evaluation file.
    """
    lm_eval = require("lm_eval")
    require("accelerate")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from retriever.confirm.bpb import resolve_device

    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    names = [get_task(t).name for t in tasks]
    if not names:
        raise ConfigError("no evaluation task given")
    files = resolve_data(names, data)
    records = {t: read_mc_records(p) for t, p in files.items() if p is not None}  # validated first
    device = resolve_device(device)
    # lm-eval logs every left-truncated request at WARNING: thousands of lines for a tiny proxy
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    model, tok = _load_model(checkpoint, device)
    from retriever.proxy.train import _context_length

    ctx = _context_length(model.config)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)
    texts: dict[str, list[str]] = {}
    skipped: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="retriever_tasks_") as tmp:
        run_files = dict(files)
        for t, recs in records.items():
            keep, skipped[t] = fitting_records(recs, tok, ctx)
            if not keep:
                raise ConfigError(
                    f"{t}: no record's choices fit the model's context ({ctx} "
                    "tokens); train the proxy with a longer seq_len"
                )
            if skipped[t]:
                log.warning(
                    "%s: %d record(s) with a choice longer than the context (%s) skipped",
                    t,
                    skipped[t],
                    ctx,
                )
                fitting = Path(tmp) / f"{get_task(t).harness}_fitting.jsonl"
                fitting.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in keep))
                run_files[t] = str(fitting)
            texts[t] = [record_text(r, get_task(t)) for r in keep[:limit]]
        harness = write_task_yamls(run_files, Path(tmp))
        # ours only (indexing lm-eval's thousands of built-in YAMLs costs seconds)
        tm = TaskManager(include_path=[tmp, str(TASK_DIR)], include_defaults=False)
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(harness.values()),
            task_manager=tm,
            limit=limit,
            log_samples=False,
            num_fewshot=0,
            random_seed=0,
            numpy_random_seed=0,
            torch_random_seed=0,
            fewshot_random_seed=0,
        )
    del lm, model
    scores: dict[str, dict[str, float]] = {}
    for t, hname in harness.items():
        r = out["results"][hname]
        row = {m: float(r.get(f"{m},none", math.nan)) for m in METRICS}
        n = out.get("n-samples", {}).get(hname, {})
        row["n"] = int(n.get("effective", n.get("original", 0)))
        row["skipped_too_long"] = skipped.get(t, 0)
        if bpb:
            tt = texts.get(t)
            if tt is None:
                tt = _hub_texts(get_task(t), limit)
            row["bpb"] = _bpb(checkpoint, tt, device)
        else:
            row["bpb"] = math.nan
        scores[t] = row
    return scores
