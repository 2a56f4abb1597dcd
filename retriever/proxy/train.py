"""Train a proxy causal LM (a transformers model) on a dataset for a fixed token budget.

Layout of ``OUT``::

    manifest.json      settings: the ProxyConfig and the data fingerprint (checked on resume)
    data/tokens.npy    the packed token stream (see :mod:`retriever.proxy.data`)
    checkpoint/        the last checkpoint: HF model files, tokenizer, trainer.pt (optimizer, RNG),
                       state.json (step, tokens, seconds, losses); replaced atomically
    model/             the final model + tokenizer (``from_pretrained``-able)
    result.json        tokens, tokens/s, seconds, steps, final loss; written last (marks completion)

Resuming: rerun with the same settings; training restarts at the last checkpoint's step. The batch
of a step depends only on the step number (:class:`~retriever.proxy.data.BlockSampler`), dropout
is off, and optimizer state and RNGs are restored, so a resumed run ends on the weights of an
uninterrupted one (bit for bit on the same CPU).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.errors import ConfigError, InputError, ResumeError
from retriever.io import read_json, replace_dir, write_json_atomic
from retriever.manifest import check_or_write_manifest
from retriever.proxy.config import ProxyConfig
from retriever.proxy.data import BlockSampler, build_token_stream

log = logging.getLogger(__name__)

LOSS_EVERY = 10  # steps between entries of the loss curve


@dataclass(frozen=True)
class ProxyResult:
    """What a proxy training produced.

    Attributes:
        checkpoint: the final model folder (HF ``from_pretrained``-able, tokenizer beside).
        tokens: tokens trained on (steps x batch_size x seq_len).
        tokens_per_s: tokens / seconds (training time over every call, checkpoints included).
        seconds: training seconds over every call.
        resumed: this call started from a checkpoint of an earlier, interrupted call.
        steps: optimizer steps.
        final_loss: mean training loss of the last ``LOSS_EVERY`` steps.
        epochs: passes over the dataset's tokens.
        n_docs: documents read from the dataset.
        device, dtype: where and in what precision it trained.
        cached: the run was already complete: nothing was trained by this call.
    """

    checkpoint: Path
    tokens: int
    tokens_per_s: float
    seconds: float
    resumed: bool
    steps: int
    final_loss: float
    epochs: float
    n_docs: int
    device: str
    dtype: str
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checkpoint"] = str(self.checkpoint)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], cached: bool = False) -> ProxyResult:
        keys = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        keys["checkpoint"] = Path(keys["checkpoint"])
        keys["cached"] = cached
        return cls(**keys)


def lr_at(step: int, total: int, cfg: ProxyConfig) -> float:
    """Learning rate of ``step`` (0-based): linear warmup, cosine decay to ``min_lr_ratio * lr``."""
    warm = max(1, int(round(cfg.warmup * total))) if cfg.warmup > 0 else 0
    if step < warm:
        return cfg.lr * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def load_tokenizer(cfg: ProxyConfig):
    """The byte-level tokenizer, or ``AutoTokenizer`` of ``cfg.tokenizer`` / the checkpoint."""
    name = cfg.tokenizer_name
    if name == "byte":
        from retriever.confirm.tiny_panel import byte_tokenizer

        return byte_tokenizer()
    transformers = require("transformers")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(name or cfg.init)
    except (OSError, ValueError) as e:
        raise InputError(
            f"cannot load tokenizer {name or cfg.init!r} ({type(e).__name__}: {e}); "
            "offline? use tokenizer='byte' or a local folder"
        ) from e
    if tok.eos_token_id is None:
        raise ConfigError(f"tokenizer {name or cfg.init!r} has no EOS token to separate documents")
    return tok


def build_model(cfg: ProxyConfig, vocab_size: int, tokenizer):
    """A new ``GPT2LMHeadModel`` / ``LlamaForCausalLM`` (dropout off), or the ``init``
    checkpoint."""
    torch = require("torch")
    transformers = require("transformers")
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()  # "loss_type=None" notices of new configs
    try:
        if cfg.mode == "continue":
            try:
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    cfg.init, dtype=torch.float32
                )
            except (OSError, ValueError) as e:
                raise InputError(
                    f"cannot load checkpoint {cfg.init!r} ({type(e).__name__}: {e}); "
                    "offline? use a local folder"
                ) from e
            ctx = _context_length(model.config)
            if ctx is not None and cfg.seq_len > ctx:
                raise ConfigError(f"seq_len {cfg.seq_len} exceeds the checkpoint's context {ctx}")
            return model
        torch.manual_seed(cfg.seed)
        special = {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
        }
        if cfg.arch == "gpt2":
            conf = transformers.GPT2Config(
                vocab_size=vocab_size,
                n_positions=cfg.seq_len,
                n_embd=cfg.n_embd,
                n_layer=cfg.n_layer,
                n_head=cfg.n_head,
                resid_pdrop=0.0,
                embd_pdrop=0.0,
                attn_pdrop=0.0,
                **special,
            )
            return transformers.GPT2LMHeadModel(conf)
        conf = transformers.LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=cfg.n_embd,
            intermediate_size=4 * cfg.n_embd,
            num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head,
            num_key_value_heads=cfg.n_head,
            max_position_embeddings=cfg.seq_len,
            tie_word_embeddings=True,
            attention_dropout=0.0,
            **special,
        )
        return transformers.LlamaForCausalLM(conf)
    finally:
        transformers.utils.logging.set_verbosity(verbosity)


def _context_length(conf) -> int | None:
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        v = getattr(conf, key, None)
        if isinstance(v, int) and v > 1:
            return v
    return None


def _precision(cfg: ProxyConfig, device: str):
    """``(autocast dtype or None, name)``: bf16 autocast on CUDA under ``auto``, fp32 on CPU."""
    torch = require("torch")
    if cfg.dtype == "float32" or (cfg.dtype == "auto" and not device.startswith("cuda")):
        return None, "float32"
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return torch.float16, "float16"
    return torch.bfloat16, "bfloat16"


def _save_checkpoint(out: Path, model, tokenizer, optimizer, state: dict[str, Any]) -> None:
    """Write ``checkpoint.tmp/`` in full, then swap it in for ``checkpoint/`` (old kept until
    then)."""
    torch = require("torch")
    tmp, final, old = out / "checkpoint.tmp", out / "checkpoint", out / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({"optimizer": optimizer.state_dict(), "rng": rng}, tmp / "trainer.pt")
    write_json_atomic(tmp / "state.json", state)  # last: a folder without it is incomplete
    replace_dir(tmp, final, old)


def _find_checkpoint(out: Path) -> Path | None:
    for name in ("checkpoint", "checkpoint.old"):  # .old: killed between the two renames
        p = out / name
        if (p / "state.json").is_file() and (p / "trainer.pt").is_file():
            return p
    return None


def train_proxy(
    data: str | os.PathLike | list[str],
    out: str | os.PathLike,
    config: ProxyConfig | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> ProxyResult:
    """Train (or finish training) a proxy LM on ``data`` for ``config.tokens`` tokens.

    Args:
        data: a ``build-dataset`` output folder, or corpus files / folders / ``hf://`` ids.
        out: run folder (see the module docstring); rerun with the same settings to resume.
        config: the settings (default :class:`ProxyConfig()`).
        progress: show a tqdm bar on stderr with tokens/s and the loss.
        on_step: called as ``on_step(step, loss)`` after each optimizer step (and its checkpoint).

    Returns:
        A :class:`ProxyResult`; ``out/result.json`` holds the same. A finished run is returned
        as is (``cached=True``).

    Raises:
        ResumeError: ``out`` holds a run with other settings or other data.
        InputError: unreadable data or checkpoint.
        ConfigError: invalid settings.
    """
    cfg = config or ProxyConfig()
    torch = require("torch")
    transformers = require("transformers")
    from retriever.confirm.bpb import resolve_device
    from retriever.progress import progress_bar

    transformers.utils.logging.disable_progress_bar()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    autocast_dtype, dtype_name = _precision(cfg, device)
    tokenizer = load_tokenizer(cfg)
    stream = build_token_stream(
        data,
        out / "data",
        tokenizer,
        cfg.tokenizer_name or str(cfg.init),
        text_field=cfg.text_field,
        max_docs=cfg.max_docs,
    )
    # threads and checkpoint spacing do not change the weights: a resume may change them
    run_cfg = {k: v for k, v in cfg.to_dict().items() if k not in ("threads", "save_every")}
    settings = {
        **run_cfg,
        "data": stream.settings["data"],
        "shards": stream.settings["shards"],
        "device": device.split(":")[0],
        "dtype": dtype_name,
    }
    check_or_write_manifest(out, settings)
    result_path = out / "result.json"
    if result_path.is_file():
        return ProxyResult.from_dict(read_json(result_path), cached=True)

    steps = math.ceil(cfg.tokens / (cfg.batch_size * cfg.seq_len))
    sampler = BlockSampler(stream.n_blocks(cfg.seq_len), cfg.batch_size, cfg.seed)
    blocks = np.asarray(stream.tokens[: sampler.n_blocks * cfg.seq_len]).reshape(
        sampler.n_blocks, cfg.seq_len
    )  # [n_blocks, seq_len]

    ckpt = _find_checkpoint(out)
    resumed = ckpt is not None
    if ckpt is not None:
        state = read_json(ckpt / "state.json")
        if state.get("steps_total") != steps:
            raise ResumeError(
                f"{ckpt} was made for {state.get('steps_total')} steps, not {steps}; "
                "use a new --out folder"
            )
        model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    else:
        state = {"step": 0, "tokens": 0, "seconds": 0.0, "losses": [], "steps_total": steps}
        model = build_model(cfg, len(tokenizer), tokenizer)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise ConfigError(
            f"tokenizer has {len(tokenizer)} ids but the model only "
            f"{model.get_input_embeddings().num_embeddings} embeddings"
        )
    if getattr(model, "loss_type", None) is None:
        model.loss_type = (
            "ForCausalLM"  # GPT2LMHeadModel's name matches no loss: silence the notice
        )
    model.to(device)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    if ckpt is not None:
        saved = torch.load(ckpt / "trainer.pt", map_location=device, weights_only=False)
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"]["torch"])
        np.random.set_state(saved["rng"]["numpy"])
        if "cuda" in saved["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
        log.info("proxy: resuming %s at step %d of %d", out, state["step"], steps)

    tokens_per_step = cfg.batch_size * cfg.seq_len
    bar = progress_bar(
        total=steps, initial=state["step"], unit="step", desc="proxy train", progress=progress
    )
    t_call = time.perf_counter()
    seconds_before = float(state["seconds"])
    tokens_call = 0
    window: list[float] = []
    try:
        for step in range(state["step"], steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, cfg)
            x = torch.from_numpy(blocks[sampler.blocks(step)].astype(np.int64)).to(device)  # [B, L]
            ones = torch.ones_like(x)  # packed blocks: no padding (EOS is also the pad id)
            if autocast_dtype is not None:
                with torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype):
                    loss = model(input_ids=x, attention_mask=ones, labels=x, use_cache=False).loss
            else:
                loss = model(input_ids=x, attention_mask=ones, labels=x, use_cache=False).loss
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_v = float(loss.detach())
            if not math.isfinite(loss_v):
                raise InputError(
                    f"proxy training diverged at step {step} (loss {loss_v}); "
                    "lower lr or check the data"
                )
            window.append(loss_v)
            tokens_call += tokens_per_step
            done = step + 1
            if done % LOSS_EVERY == 0 or done == steps:
                state["losses"].append([done, round(float(np.mean(window)), 5)])
                window = []
            elapsed = time.perf_counter() - t_call
            bar.update(1)
            bar.set_postfix(loss=f"{loss_v:.3f}", tok_s=f"{tokens_call / max(elapsed, 1e-9):,.0f}")
            if done % cfg.save_every == 0 or done == steps:
                state.update(
                    step=done,
                    tokens=done * tokens_per_step,
                    seconds=round(seconds_before + time.perf_counter() - t_call, 4),
                )
                _save_checkpoint(out, model, tokenizer, optimizer, state)
            if on_step is not None:
                on_step(done, loss_v)
    finally:
        bar.close()
    seconds = seconds_before + time.perf_counter() - t_call

    final = out / "model"
    tmp = out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    replace_dir(tmp, final)
    losses = state["losses"]
    res = ProxyResult(
        checkpoint=final.resolve(),
        tokens=steps * tokens_per_step,
        tokens_per_s=round(steps * tokens_per_step / max(seconds, 1e-9), 1),
        seconds=round(seconds, 3),
        resumed=resumed,
        steps=steps,
        final_loss=float(losses[-1][1]) if losses else float("nan"),
        epochs=round(sampler.epochs(steps), 4),
        n_docs=stream.n_docs,
        device=device,
        dtype=dtype_name,
    )
    write_json_atomic(
        result_path,
        {
            **res.to_dict(),
            "config": cfg.to_dict(),
            "losses": losses,
            "data_tokens": int(len(stream.tokens)),
            "rejected": stream.rejected,
            "params": int(sum(p.numel() for p in model.parameters())),
        },
    )
    shutil.rmtree(out / "checkpoint", ignore_errors=True)  # the model/ folder supersedes it
    return res
