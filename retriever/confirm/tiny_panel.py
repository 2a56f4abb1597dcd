"""A panel of tiny GPT-2-style LMs built in seconds, offline: for tests and the offline end-to-end
run.

Each model reads bytes (a byte-level tokenizer: ids 0-255 are the bytes, 256 is BOS ``<s>``, 257
is EOS ``</s>``) and is trained for a few seconds on its own mix of the given corpora: model ``k``
of ``n`` draws a fraction ``k / (n - 1)`` of its training sequences from the first corpus (the
task-like text) and the rest from the others (generic text). Their skill on the task therefore
differs by construction, which is what a perplexity correlation needs to see.

The tokenizer is a plain ``tokenizers`` BPE with no merges over the 256 byte symbols of GPT-2's
byte-to-unicode map, saved as ``tokenizer.json`` in every model folder, so
``AutoTokenizer.from_pretrained(folder)`` and ``AutoModelForCausalLM.from_pretrained(folder)`` load
a model with no custom class and no download.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.errors import ConfigError
from retriever.io import write_json_atomic, write_text_atomic

BOS, EOS = "<s>", "</s>"
BOS_ID, EOS_ID = 256, 257
VOCAB_SIZE = 258


@dataclass(frozen=True)
class TinyPanelConfig:
    """How big a tiny panel is and how long it trains (``retriever confirm tiny-panel``; a run
    config's ``[confirm]`` ``tiny_models`` / ``tiny_steps`` / ``tiny_texts``).

    Attributes:
        models: panel size (models trained, each on its own mix of the corpora).
        steps: training steps per model.
        texts: training texts per corpus (a run: each task's gold, and the corpus).
    """

    models: int = 6
    steps: int = 120
    texts: int = 300

    def __post_init__(self) -> None:
        for name, least in (("models", 2), ("steps", 1), ("texts", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ConfigError(
                    f"tiny panel {name} (a run config's [confirm] tiny_{name}) must be an integer "
                    f">= {least}, got {v!r}"
                )


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 bytes to printable unicode characters."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def byte_tokenizer():
    """A ``PreTrainedTokenizerFast`` whose ids are the UTF-8 bytes (0-255) plus BOS 256, EOS 257."""
    tokenizers = require("tokenizers")
    transformers = require("transformers")
    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    vocab[BOS], vocab[EOS] = BOS_ID, EOS_ID
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    tok.add_special_tokens([BOS, EOS])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS
    )


def random_byte_lm(seed: int = 0, **config: Any) -> Any:
    """A randomly initialised GPT-2 causal LM over :func:`byte_tokenizer`'s ids (``torch`` seeded
    with ``seed`` first); ``config``: ``GPT2Config`` fields (sizes, dropouts, ``vocab_size``)."""
    torch = require("torch")
    transformers = require("transformers")
    torch.manual_seed(seed)
    fields = {"vocab_size": VOCAB_SIZE, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID} | config
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**fields))


def save_random_byte_lm(folder: str | os.PathLike, seed: int = 0, **config: Any) -> Any:
    """:func:`random_byte_lm` saved with the byte tokenizer in ``folder``, a folder
    ``AutoModelForCausalLM`` / ``AutoTokenizer`` load; returns the model."""
    model = random_byte_lm(seed, **config)
    model.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return model


def _encode(texts: list[str]) -> np.ndarray:
    """All texts as one byte stream, each wrapped in BOS ... EOS."""
    parts = []
    for t in texts:
        parts.append(np.array([BOS_ID], dtype=np.int64))
        parts.append(np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64))
        parts.append(np.array([EOS_ID], dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def default_mixes(names: list[str], n_models: int) -> list[dict[str, float]]:
    """Model ``k`` takes ``k / (n - 1)`` of the first corpus and splits the rest over the others."""
    if n_models < 2:
        raise ConfigError("a panel needs at least 2 models (5-8 make a usable correlation)")
    mixes = []
    for k in range(n_models):
        f = k / (n_models - 1)
        mix = {names[0]: f}
        rest = names[1:]
        for name in rest:
            mix[name] = (1.0 - f) / len(rest)
        if not rest:
            mix[names[0]] = 1.0
        mixes.append(mix)
    return mixes


def train_tiny_panel(
    out_dir: str | os.PathLike,
    corpora: dict[str, list[str]],
    steps: int = TinyPanelConfig.steps,
    seed: int = 0,
    n_models: int = TinyPanelConfig.models,
    mixes: list[dict[str, float]] | None = None,
    n_positions: int = 128,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 2,
    batch_size: int = 8,
    lr: float = 1e-2,
    name: str = "tiny",
    progress: bool | None = None,
) -> Path:
    """Train ``n_models`` tiny byte-level GPT-2 models on different corpus mixes; write a panel.

    Args:
        out_dir: folder for ``panel.toml``, ``tiny_panel.json`` and one folder per model.
        corpora: corpus name -> texts; the first corpus is the one whose share grows with ``k``.
        steps: optimizer steps per model (about 20-40 ms each on one CPU thread at the defaults).
        seed: seeds initialisation and sampling (model ``k`` uses ``seed + k``).
        n_models: panel size (ignored when ``mixes`` is given).
        mixes: per-model sampling weights over corpus names (default :func:`default_mixes`).
        n_positions: context length; short on purpose, so longer documents exercise windowing.
        n_embd, n_layer, n_head: GPT-2 width, depth and heads.
        batch_size: sequences of ``n_positions`` bytes per step.
        lr: AdamW learning rate.
        name: panel name.
        progress: a bar of training steps (``None``: on a terminal; see :mod:`retriever.progress`).

    Returns:
        Path of the written ``panel.toml`` (no scores: compute them with the scorecard).

    Raises:
        ConfigError: empty corpora or mixes naming unknown corpora.
    """
    torch = require("torch")
    transformers = require("transformers")
    transformers.utils.logging.disable_progress_bar()
    names = list(corpora)
    if not names or any(not corpora[n] for n in names):
        raise ConfigError(
            "every corpus needs at least one text, got sizes "
            f"{ {n: len(v) for n, v in corpora.items()} }"
        )
    if steps < 1:
        raise ConfigError("steps must be >= 1")
    mixes = mixes or default_mixes(names, n_models)
    for mix in mixes:
        bad = set(mix) - set(names)
        if bad or sum(mix.values()) <= 0:
            raise ConfigError(f"mix {mix} names unknown corpora {sorted(bad)} or has no weight")
    streams = {n: _encode(corpora[n]) for n in names}
    for n, s in streams.items():
        if len(s) < n_positions + 1:
            # short corpora are repeated so a training window always fits
            streams[n] = np.tile(s, (n_positions + 1) // max(len(s), 1) + 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_tokenizer()
    info: dict[str, Any] = {
        "name": name,
        "corpora": {n: len(v) for n, v in corpora.items()},
        "steps": steps,
        "seed": seed,
        "models": [],
    }
    lines = [f'name = "{name}"', 'scores = "scores.csv"', ""]
    from retriever.progress import progress_bar

    bar = progress_bar(
        total=len(mixes) * steps,
        desc=f"train {len(mixes)} tiny LMs",
        unit="step",
        progress=progress,
    )
    for k, mix in enumerate(mixes):
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        verbosity = transformers.utils.logging.get_verbosity()
        # the "loss_type=None" notice of new configs
        transformers.utils.logging.set_verbosity_error()
        try:
            # one init (seed) for every model: they differ by their data mix only
            model = random_byte_lm(
                seed, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                pad_token_id=EOS_ID,
            )  # fmt: skip
            with torch.no_grad():
                model(
                    input_ids=torch.zeros((1, 2), dtype=torch.long),
                    labels=torch.zeros((1, 2), dtype=torch.long),
                )
        finally:
            transformers.utils.logging.set_verbosity(verbosity)
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        w = np.array([mix.get(n, 0.0) for n in names], dtype=np.float64)
        w = w / w.sum()
        model.train()
        loss_val = float("nan")
        for _ in range(steps):
            src = rng.choice(len(names), size=batch_size, p=w)  # [B] corpus of each sequence
            rows = []
            for c in src:
                s = streams[names[c]]
                i = int(rng.integers(0, len(s) - n_positions))
                rows.append(s[i : i + n_positions])
            x = torch.from_numpy(np.stack(rows))  # [B, n_positions]
            loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss_val = float(loss.detach())
            bar.update(1)
        model.eval()
        mname = f"{name}-{k}"
        mdir = out / mname
        model.save_pretrained(mdir)
        tokenizer.save_pretrained(mdir)
        info["models"].append(
            {
                "name": mname,
                "mix": {n: round(v, 4) for n, v in mix.items()},
                "final_train_loss": round(loss_val, 4),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
        lines += ["[[models]]", f'name = "{mname}"', f'path = "{mname}"', ""]
    bar.close()
    write_json_atomic(out / "tiny_panel.json", info)
    panel = out / "panel.toml"
    write_text_atomic(panel, "\n".join(lines))
    return panel


_TOOLS = [
    "get_weather",
    "search_flights",
    "send_email",
    "create_event",
    "convert_currency",
    "get_stock_price",
    "book_table",
    "translate_text",
]
_ARGS = ["city", "date", "to", "subject", "amount", "symbol", "time", "language", "query", "limit"]
_VALUES = [
    "Paris",
    "2024-05-01",
    "alice@example.com",
    "EUR",
    "AAPL",
    "19:30",
    "de",
    "42",
    "Tokyo",
    "meeting notes",
    "USD",
    "7",
]
_WORDS = (
    "the river valley was settled by farmers who grew wheat and barley along its banks while "
    "the town council met each spring to discuss roads schools and the old stone bridge that "
    "history records as built in the twelfth century by monks from a nearby abbey"
).split()


def synthetic_corpora(n: int = 200, seed: int = 0) -> dict[str, list[str]]:
    """Seeded stand-ins for task text (function-calling transcripts) and generic prose.

    Used when the shared sample data is absent, so a panel can be built anywhere.

    Returns:
        ``{"task": [...], "generic": [...]}``, ``n`` texts each.
    """
    rng = np.random.default_rng(seed)
    task, generic = [], []
    for _ in range(n):
        calls = []
        for _ in range(int(rng.integers(1, 3))):
            args = {
                str(a): str(rng.choice(_VALUES)) for a in rng.choice(_ARGS, size=2, replace=False)
            }
            body = ", ".join(f'"{k}": "{v}"' for k, v in args.items())
            calls.append(f'{{"name": "{rng.choice(_TOOLS)}", "arguments": {{{body}}}}}')
        task.append(
            f"User: please help with {rng.choice(_VALUES)}.\nTools: "
            f"{', '.join(rng.choice(_TOOLS, 3))}\nCalls: [{', '.join(calls)}]"
        )
        k = int(rng.integers(25, 60))
        words = rng.choice(_WORDS, size=k)
        generic.append(" ".join(words).capitalize() + ".")
    return {"task": task, "generic": generic}


def read_texts(paths: list[str], max_texts: int | None, seed: int = 0, reader=None) -> list[str]:
    """Texts of corpus files/folders, a seeded sample of at most ``max_texts``.

    Args:
        reader: the :class:`~retriever.corpus.CorpusReader` (fields, detokenizer); default ``text``.
    """
    from retriever.corpus import CorpusReader, list_shards
    from retriever.data import Doc

    reader = reader or CorpusReader()
    texts = [
        rec.text
        for shard in list_shards(paths)
        for rec in reader.read(shard)
        if isinstance(rec, Doc)
    ]
    if max_texts is not None and len(texts) > max_texts:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), size=max_texts, replace=False))]
    return texts


def build_tiny_panel(
    out_dir: str | os.PathLike,
    gold: list[str] | None = None,
    generic: list[str] | None = None,
    task: str | None = None,
    holdout: float = 0.2,
    max_texts: int = 400,
    n_models: int = TinyPanelConfig.models,
    steps: int = TinyPanelConfig.steps,
    seed: int = 0,
) -> dict:
    """Read the corpora (or make synthetic ones), train the panel, optionally score it on ``task``.

    With ``task``, a held-out share of the gold texts (never trained on) gives each model a
    ``neg_bpb`` score in ``out_dir/scores.csv``, so the panel is ready for ``retriever confirm``.

    Args:
        out_dir: panel folder.
        gold: task-like text files/folders (``None``: synthetic function-calling texts).
        generic: generic text files/folders (``None``: synthetic prose).
        task: task name to score under.
        holdout: share of gold texts kept out of training for the score.
        max_texts: texts sampled per corpus.
        n_models, steps, seed: see :func:`train_tiny_panel`.

    Returns:
        A report: ``panel`` path, ``corpora`` sizes, per-model mix / loss / time / score.
    """
    from retriever.io import read_json

    if not 0 <= holdout < 1:
        raise ConfigError(f"holdout must be in [0, 1), got {holdout}")
    synth = synthetic_corpora(max_texts, seed) if gold is None or generic is None else {}
    task_texts = read_texts(gold, max_texts, seed) if gold else synth["task"]
    gen_texts = read_texts(generic, max_texts, seed + 1) if generic else synth["generic"]
    n_hold = int(round(holdout * len(task_texts))) if task else 0
    if task and n_hold < 1:
        raise ConfigError(
            f"only {len(task_texts)} gold texts: too few to hold some out for scoring"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(task_texts))
    held = [task_texts[i] for i in sorted(order[:n_hold])]
    train = [task_texts[i] for i in sorted(order[n_hold:])]
    panel = train_tiny_panel(
        out_dir, {"task": train, "generic": gen_texts}, steps=steps, seed=seed, n_models=n_models
    )
    info = read_json(Path(out_dir) / "tiny_panel.json")
    report = {
        "panel": str(panel),
        "corpora": {"task": len(train), "generic": len(gen_texts), "held_out": len(held)},
        "synthetic": synth is not None,
        "task": task,
        "models": info["models"],
    }
    if task:
        from retriever.confirm.panel import load_panel
        from retriever.confirm.scorecard import GoldSample, scorecard, update_scores_file

        res = scorecard(load_panel(panel), task, GoldSample(texts=held), device="cpu")
        update_scores_file(Path(out_dir) / "scores.csv", res.scores)
        by_model = {s.model: s.score for s in res.scores}
        for m in report["models"]:
            if m["name"] in by_model:
                m["score"] = by_model[m["name"]]
    write_json_atomic(Path(out_dir) / "tiny_panel.json", {**info, **report})
    return report
