"""Settings of one proxy training run (one frozen dataclass: Python API, CLI and run config)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from retriever.errors import ConfigError

MODES = ("scratch", "continue")
ARCHS = ("gpt2", "llama")


@dataclass(frozen=True)
class ProxyConfig:
    """How to train a proxy language model on a dataset for a fixed token budget.

    Attributes:
        mode: ``scratch`` (a new model of the size below) or ``continue`` (continued pretraining of
            ``init``, e.g. ``data4elm/Llama-400M-12L``).
        tokens: token budget (on the command line: 200k, 10M, 1B or a number). Steps:
            ``ceil(tokens / (batch_size * seq_len))``.
        seq_len: tokens per training sequence (documents are packed, EOS between them).
        n_layer, n_embd, n_head: size of a ``scratch`` model.
        arch: ``gpt2`` (``GPT2LMHeadModel``) or ``llama`` (``LlamaForCausalLM``) for ``scratch``.
        batch_size: sequences per optimizer step.
        lr: peak AdamW learning rate (linear warmup, cosine decay to ``min_lr_ratio * lr``).
        warmup: share of the steps spent warming up.
        min_lr_ratio: final learning rate as a share of ``lr``.
        weight_decay: AdamW weight decay.
        grad_clip: gradient norm clip (0: none).
        seed: model initialisation and data order.
        device: ``auto`` (CUDA when torch sees it), ``cpu`` or ``cuda[:N]``.
        dtype: ``auto`` = bf16 autocast on CUDA (fp16 where bf16 is missing), fp32 on CPU;
            or ``float32`` / ``bfloat16``.
        tokenizer: ``byte`` (offline byte-level tokenizer, ``scratch`` only) or a Hub id / folder;
            ``None``: ``byte`` for ``scratch``, the checkpoint's own for ``continue``.
        init: checkpoint (Hub id or folder) of ``continue`` mode.
        save_every: optimizer steps between checkpoints (the last one is always saved).
        text_field: field of the document text in the dataset records.
        max_docs: read at most this many documents (``None``: all).
        threads: torch CPU threads (``None``: torch's default; 1 is fastest on a loaded machine).
    """

    mode: str = "scratch"
    tokens: int = 200_000
    seq_len: int = 256
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 2
    arch: str = "gpt2"
    batch_size: int = 8
    lr: float = 3e-3
    warmup: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    tokenizer: str | None = None
    init: str | None = None
    save_every: int = 100
    text_field: str = "text"
    max_docs: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"proxy mode {self.mode!r} must be one of {list(MODES)}")
        if self.arch not in ARCHS:
            raise ConfigError(f"proxy arch {self.arch!r} must be one of {list(ARCHS)}")
        if self.mode == "continue" and not self.init:
            raise ConfigError(
                "proxy mode 'continue' needs init = a checkpoint (Hub id or folder), "
                "e.g. data4elm/Llama-400M-12L"
            )
        if self.mode == "continue" and self.tokenizer == "byte":
            raise ConfigError(
                "a continued checkpoint keeps its own tokenizer; drop tokenizer='byte'"
            )
        for name in (
            "tokens",
            "seq_len",
            "n_layer",
            "n_embd",
            "n_head",
            "batch_size",
            "save_every",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"proxy {name} must be a positive integer, got {v!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})"
            )
        if not self.lr > 0:
            raise ConfigError(f"proxy lr must be > 0, got {self.lr!r}")
        if not 0 <= self.warmup < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("proxy warmup must be in [0, 1) and min_lr_ratio in [0, 1]")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"proxy dtype {self.dtype!r} must be auto, float32 or bfloat16")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("proxy threads must be >= 1 (or unset)")
        if self.max_docs is not None and self.max_docs < 1:
            raise ConfigError("proxy max_docs must be >= 1 (or unset)")

    @property
    def tokenizer_name(self) -> str | None:
        """The tokenizer actually used: ``byte``, a Hub id / folder, or ``None`` (the
        checkpoint's)."""
        if self.tokenizer:
            return self.tokenizer
        return "byte" if self.mode == "scratch" else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProxyConfig:
        """Build from a TOML section / JSON; unknown keys are an error naming the valid ones."""
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ConfigError(f"unknown proxy option(s) {bad}; valid: {sorted(names)}")
        return cls(**d)
