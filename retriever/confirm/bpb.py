"""Bits per byte of documents under a causal LM: batched, length-bucketed, windowed.

Definition (the one ``lm-evaluation-harness`` uses for ``bits_per_byte`` with
``loglikelihood_rolling``)::

    bpb(doc) = -sum_t log p(token_t | tokens_<t) / ln 2 / utf8_bytes(doc.text)

Every token is scored: the first one is conditioned on a prefix token (the tokenizer's BOS, else its
EOS, as lm-eval's ``prefix_token_id``). A document longer than the model's context is cut into
windows of ``max_length`` tokens whose predictions are disjoint (lm-eval
``get_rolling_token_windows`` with ``context_len=1``: each later window re-reads only the one token
before it); ``context_tokens > 1`` gives overlapping windows where each later window re-reads
``context_tokens - 1`` more earlier tokens as unscored context (a sliding stride: costlier, closer
to the full-context loss).

Speed: all windows of a block of documents are sorted by length and packed into batches of at most
``max_batch_tokens`` padded tokens (right padding plus attention mask, so positions are unchanged),
run under ``torch.inference_mode``, in bf16 (fp16 where bf16 is missing) on CUDA and fp32 on CPU;
losses are summed in float32/float64 whatever the weights' dtype.

Tokenizer: ``AutoTokenizer.from_pretrained(model.tokenizer or model.path)``; the tiny test panel
saves a byte-level ``tokenizer.json`` next to its weights, so it loads through the same call.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever._deps import require
from retriever.confirm.panel import PanelModel
from retriever.errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

LN2 = math.log(2.0)
LOGIT_CHUNK = 1 << 26  # float32 logits upcast at a time (256 MiB)
# on CPU, the most float32 logits one forward may produce: a GPT-2-sized vocabulary (50k) at
# 8k tokens a batch made 1.6 GB of logits per forward and ran 0.6x the one-document loop
CPU_LOGIT_BYTES = 1 << 28
DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    torch = require("torch")
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for but torch sees no GPU; use --device cpu or auto"
        )
    return device


def resolve_dtype(dtype: str | None, device: str) -> torch.dtype:
    """``auto``: bf16 on CUDA (fp16 when the GPU lacks bf16), fp32 on CPU."""
    torch = require("torch")
    name = dtype or "auto"
    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r} must be one of {list(DTYPES)}")
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, name)


def _version(v: str) -> tuple[int, int]:
    parts = (v.split(".") + ["0"])[:2]
    return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts)  # type: ignore[return-value]


def rolling_windows(
    tokens: list[int], prefix_token: int, max_length: int, context_tokens: int = 1
) -> list[tuple[list[int], list[int]]]:
    """Cut a token list into ``(input, target)`` windows that together score every token once.

    The last ``len(target)`` positions of ``input`` predict ``target``. This is lm-eval's
    ``get_rolling_token_windows(tokens, prefix_token, max_length, context_len=context_tokens)``.

    Args:
        tokens: the document's token ids (no special tokens).
        prefix_token: id that conditions the first token (BOS or EOS).
        max_length: tokens per forward.
        context_tokens: 1 for disjoint windows; ``k`` re-reads ``k - 1`` extra earlier tokens.

    Returns:
        Windows in document order; empty for an empty document.
    """
    if not 1 <= context_tokens <= max_length:
        raise ConfigError(
            f"context_tokens must be in [1, max_length={max_length}], got {context_tokens}"
        )
    if not tokens:
        return []
    pred_len = max_length - context_tokens + 1
    first = min(max_length, len(tokens))
    out = [([prefix_token] + tokens[: first - 1], tokens[:first])]
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, pred_len)
        end = done + n
        out.append((tokens[max(0, end - max_length - 1) : end - 1], tokens[end - n : end]))
        done = end
    return out


@dataclass(frozen=True)
class BpbResult:
    """Per-document results of one model.

    Attributes:
        bpb: ``[n_docs]`` bits per byte (NaN where ``status`` is not ``"ok"``).
        nats: ``[n_docs]`` summed negative log-likelihood in nats.
        n_tokens: ``[n_docs]`` tokens scored.
        n_bytes: ``[n_docs]`` UTF-8 bytes of the text.
        status: ``"ok"``, ``"nan"`` (the model gave a non-finite loss) or ``"no_tokens"``.
    """

    bpb: np.ndarray
    nats: np.ndarray
    n_tokens: np.ndarray
    n_bytes: np.ndarray
    status: list[str]


class LMScorer:
    """One causal LM, loaded once, scoring token windows in padded, length-sorted batches.

    Args:
        model: the panel entry (Hub id or folder, tokenizer, context length).
        device: ``"cuda"``, ``"cpu"`` or ``None``/``"auto"``.
        dtype: one of :data:`DTYPES` (``auto``: bf16/fp16 on CUDA, fp32 on CPU).
        max_batch_tokens: padded tokens per forward (memory: this x hidden size activations, plus
            one row of float32 logits at a time). On CPU also at most
            :data:`CPU_LOGIT_BYTES` of logits per forward: with a large vocabulary, writing and
            reading gigabytes of logits cost more than batching saved.
        max_batch_size: windows per forward.
        context_tokens: see :func:`rolling_windows`.

    Raises:
        InputError: the model or tokenizer cannot be loaded (missing folder, offline, bad config).
    """

    def __init__(
        self,
        model: PanelModel,
        device: str | None = None,
        dtype: str | None = "auto",
        max_batch_tokens: int = 8192,
        max_batch_size: int = 64,
        context_tokens: int = 1,
    ):
        if max_batch_tokens < 2 or max_batch_size < 1:
            raise ConfigError("max_batch_tokens must be >= 2 and max_batch_size >= 1")
        self.torch = require("torch")
        transformers = require("transformers")
        self.spec = model
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.context_tokens = context_tokens
        transformers.utils.logging.disable_progress_bar()
        tok_path = model.tokenizer or model.path
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                tok_path, revision=model.revision
            )
            # transformers >= 4.56 names it `dtype`; older releases only know `torch_dtype`
            key = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                model.path, revision=model.revision, **{key: self.dtype}
            )
        except (OSError, ValueError, KeyError) as e:
            raise InputError(
                f"cannot load model {model.name!r} from {model.path!r} ({type(e).__name__}: {e}). "
                "Offline? Use local folders in the panel (e.g. `retriever confirm tiny-panel`)."
            ) from e
        self.model.to(self.device).eval()
        self.max_length = self._max_length()
        head = self.model.get_output_embeddings()
        self.vocab_size = int(getattr(head, "out_features", 0) or self.model.config.vocab_size)
        rolling_windows([0], 0, self.max_length, context_tokens)  # validates context_tokens
        # we window documents ourselves; silence the "sequence longer than max" warning
        self.tokenizer.model_max_length = int(1e30)
        prefix = self.tokenizer.bos_token_id
        if prefix is None:
            prefix = self.tokenizer.eos_token_id
        if prefix is None:
            raise ConfigError(
                f"tokenizer of {model.name!r} has neither BOS nor EOS: no token to condition the "
                "first token on; use a tokenizer that defines one"
            )
        self.prefix_token = int(prefix)

    def _max_length(self) -> int:
        if self.spec.max_length:
            return int(self.spec.max_length)
        cfg = self.model.config
        for key in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
            v = getattr(cfg, key, None)
            if isinstance(v, int) and v > 1:
                return v
        v = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(v, int) and 1 < v < 1_000_000:
            return v
        raise ConfigError(
            f"cannot tell the context length of {self.spec.name!r}: set max_length in the panel"
        )

    # -- tokens -----------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)
        return [list(ids) for ids in enc["input_ids"]]

    def settings(self) -> dict[str, Any]:
        """What the cached BPB of this model depends on (the cache manifest)."""
        return {
            "path": self.spec.path,
            "tokenizer": self.spec.tokenizer or self.spec.path,
            "revision": self.spec.revision,
            "max_length": self.max_length,
            "context_tokens": self.context_tokens,
            "prefix_token": self.prefix_token,
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    # -- the batched kernel -----------------------------------------------------------------------
    def window_nats(self, windows: list[tuple[list[int], list[int]]]) -> np.ndarray:
        """Summed negative log-likelihood (nats) of each window's targets.

        Windows are sorted by length (longest first, so an out-of-memory shows at once) and packed
        into batches of at most ``max_batch_tokens`` padded tokens.

        Args:
            windows: ``(input, target)`` pairs; ``len(target) <= len(input) <= max_length``.

        Returns:
            ``[n_windows]`` float64 nats (NaN/inf when the model produced them).
        """
        torch = self.torch
        out = np.zeros(len(windows), dtype=np.float64)
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i][0]))
        start = 0
        with torch.inference_mode():
            while start < len(order):
                width = len(windows[order[start]][0])
                rows = max(1, min(self.max_batch_size, self.max_batch_tokens // max(width, 1)))
                if self.device == "cpu":
                    rows = max(1, min(rows, CPU_LOGIT_BYTES // (4 * width * self.vocab_size)))
                batch = order[start : start + rows]
                start += len(batch)
                x = np.zeros((len(batch), width), dtype=np.int64)  # [B, L] right-padded inputs
                mask = np.zeros((len(batch), width), dtype=np.int64)  # [B, L] 1 = real token
                y = np.full((len(batch), width), -100, dtype=np.int64)  # [B, L] target or ignore
                for r, i in enumerate(batch):
                    inp, tgt = windows[i]
                    x[r, : len(inp)] = inp
                    mask[r, : len(inp)] = 1
                    y[r, len(inp) - len(tgt) : len(inp)] = tgt
                logits = self.model(
                    input_ids=torch.from_numpy(x).to(self.device),
                    attention_mask=torch.from_numpy(mask).to(self.device),
                    use_cache=False,
                ).logits  # [B, L, V]
                out[batch] = self._nll_rows(logits, torch.from_numpy(y).to(logits.device))
        return out

    def _nll_rows(self, logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Row sums of the token NLL in float32, a few rows at a time.

        Upcasting all ``[B, L, V]`` logits at once would need ``B*L*V*4`` bytes (1.6 GB for 8k
        tokens of a 50k vocabulary), so rows are taken in chunks of about :data:`LOGIT_CHUNK`
        floats.
        """
        torch = self.torch
        b, length, vocab = logits.shape
        step = max(1, LOGIT_CHUNK // max(length * vocab, 1))
        sums = []
        for lo in range(0, b, step):
            chunk = logits[lo : lo + step].float()  # [b', L, V]
            nll = torch.nn.functional.cross_entropy(
                chunk.transpose(1, 2), y[lo : lo + step], ignore_index=-100, reduction="none"
            )  # [b', L], 0 at ignored positions
            sums.append(nll.double().sum(dim=1))
        return torch.cat(sums).cpu().numpy()

    def bits_per_byte(self, texts: list[str]) -> BpbResult:
        """BPB of each text (all windows of all texts batched together).

        Args:
            texts: documents (a block: bigger blocks bucket lengths better; memory is the token
            ids).

        Returns:
            A :class:`BpbResult`; documents with a non-finite loss are NaN with status ``"nan"``.
        """
        ids = self.tokenize(texts)
        windows: list[tuple[list[int], list[int]]] = []
        owner: list[int] = []
        for d, toks in enumerate(ids):
            w = rolling_windows(toks, self.prefix_token, self.max_length, self.context_tokens)
            windows.extend(w)
            owner.extend([d] * len(w))
        nats_w = self.window_nats(windows)  # [n_windows]
        nats = np.zeros(len(texts), dtype=np.float64)
        np.add.at(nats, np.asarray(owner, dtype=np.int64), nats_w)
        return _result(texts, ids, nats)


def _result(texts: list[str], ids: list[list[int]], nats: np.ndarray) -> BpbResult:
    n_bytes = np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64)
    n_tokens = np.array([len(x) for x in ids], dtype=np.int64)
    status = []
    for i in range(len(texts)):
        if n_tokens[i] == 0 or n_bytes[i] == 0:
            status.append("no_tokens")
        elif not np.isfinite(nats[i]):
            status.append("nan")
        else:
            status.append("ok")
    ok = np.array([s == "ok" for s in status], dtype=bool)
    bpb = np.full(len(texts), np.nan)
    bpb[ok] = nats[ok] / LN2 / n_bytes[ok]
    nats = np.where(ok, nats, np.nan)
    return BpbResult(bpb=bpb, nats=nats, n_tokens=n_tokens, n_bytes=n_bytes, status=status)


def naive_bits_per_byte(scorer: LMScorer, texts: list[str]) -> BpbResult:
    """Reference: one document at a time, one window per forward (batch 1, no padding).

    The baseline of ``scripts/bench_bpb.py`` and the oracle of the tests.
    """
    torch = scorer.torch
    ids = [scorer.tokenize([t])[0] for t in texts]
    nats = np.zeros(len(texts), dtype=np.float64)
    with torch.inference_mode():
        for d, toks in enumerate(ids):
            for inp, tgt in rolling_windows(
                toks, scorer.prefix_token, scorer.max_length, scorer.context_tokens
            ):
                x = torch.tensor([inp], dtype=torch.long, device=scorer.device)  # [1, L]
                logits = (
                    scorer.model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False)
                    .logits[0]
                    .float()
                )  # [L, V]
                lp = torch.log_softmax(logits, dim=-1)[len(inp) - len(tgt) :]
                y = torch.tensor(tgt, dtype=torch.long, device=lp.device)
                nats[d] -= float(lp.gather(1, y[:, None]).double().sum())
    return _result(texts, ids, nats)
