"""Run a sentence-transformers model's transformer with OpenVINO on CPU (the fast CPU path).

Only the transformer forward moves to OpenVINO; tokenization, pooling and normalization stay
sentence-transformers' own modules, so the vectors are the model's vectors. Precision: fp32,
except bf16 on CPUs with AMX (:func:`auto_precision`); with only ``avx512_bf16`` bf16 measured
slower than fp32 on an idle machine. Whether this path or plain torch is faster on a given machine
is measured once and cached (:mod:`retriever.embed.calibrate`). The int8 paths (torch dynamic
quantization, onnxruntime int8) are as fast but move vectors to cosine 0.78 against fp32, so they
are not offered.

The model is converted once from the loaded torch weights (``openvino.convert_model``, offline, no
``optimum`` needed) and cached as OpenVINO IR under ``$RETRIEVER_CACHE/openvino/<key>/`` (default
``~/.cache/retriever``). The key hashes the weights, the config and the library versions, so a
changed model or library never reuses a stale conversion.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever._deps import require
from retriever.errors import InputError, MissingDependencyError
from retriever.privacy import opt_out_openvino_telemetry

opt_out_openvino_telemetry()  # before anything imports openvino: its import alone phones home

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PRECISIONS = ("auto", "f32", "bf16")
# what one forward costs beyond its tokens, in token positions: all-MiniLM-L6-v2, OpenVINO bf16,
# 1 thread, CPU time: ~6 ms a forward + ~0.07 ms a token position (1x32: 8 ms, 1x256: 24 ms,
# 4x256: 74 ms), so a forward is worth ~90 positions
FORWARD_OVERHEAD_TOKENS = 96


def length_groups(lengths: list[int], overhead: int = FORWARD_OVERHEAD_TOKENS) -> list[list[int]]:
    """Split one batch into forwards by padded length: positions of ``lengths`` (token counts,
    already padded) in groups of neighbours by length, longest first, that cost least in all,
    a group costing ``overhead + len(group) * its longest``. One text of 256 tokens and three
    of 32 are two forwards (96 + 256 and 96 + 3 * 32 instead of 4 * 256); lengths alike stay one.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the j longest
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):  # the last group is order[i:j], its longest lengths[order[i]]
            c = best[i] + overhead + (j - i) * lengths[order[i]]
            if c < best[j]:
                best[j], cut[j] = c, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def cache_root() -> Path:
    """Where converted models are kept: ``$RETRIEVER_CACHE`` or ``~/.cache/retriever``."""
    return Path(os.environ.get("RETRIEVER_CACHE") or Path.home() / ".cache" / "retriever")


def openvino_installed() -> bool:
    """True when the ``openvino`` package imports (the ``fast`` extra); a broken install is
    False."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def auto_precision() -> str:
    """``"bf16"`` on CPUs with AMX (bf16 matrix tiles), else ``"f32"``.

    With only ``avx512_bf16`` (dot-product instructions, no tiles) bf16 inference measured slower
    than fp32 for all-MiniLM-L6-v2 (0.94x vs 1.42x plain torch, idle, 2 cores): the conversions
    cost more than the narrower arithmetic saves on a model this small.
    """
    try:
        flags = next(
            (
                ln.split(":", 1)[1].split()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("flags")
            ),
            [],
        )
    except OSError:
        flags = []
    return "bf16" if "amx_bf16" in flags else "f32"


def _require_openvino():
    try:
        import openvino
    except ImportError as e:
        raise MissingDependencyError(
            f"the OpenVINO embedding path needs `openvino` ({e}). Install it with "
            "`pip install openvino` or `pip install 'retriever[fast]'`, or use backend='torch'."
        ) from e
    return openvino


def _features(model: SentenceTransformer, texts: list[str]) -> dict[str, Any]:
    """Tokenized ``texts`` as sentence-transformers would feed them (padded to the longest)."""
    prep = getattr(model, "preprocess", None) or model.tokenize  # ST >= 6 / ST 3-5
    return prep(texts)


def _pad(feats: dict[str, Any], multiple: int, torch) -> dict[str, Any]:
    """Right-pad the token tensors to a multiple of ``multiple`` positions (masked out), so the
    compiled model sees few distinct shapes."""
    seq = feats["input_ids"].shape[1]
    extra = -seq % multiple
    if not extra:
        return feats
    out = dict(feats)
    for k in _INPUTS:
        if k in feats:
            t = feats[k]
            out[k] = torch.cat([t, torch.zeros((t.shape[0], extra), dtype=t.dtype)], dim=1)
    return out


class _HiddenStates:
    """Factory of a torch module returning ``last_hidden_state`` from named inputs (for tracing)."""

    @staticmethod
    def make(auto_model, names: tuple[str, ...]):
        torch = require("torch")

        module: Any = torch.nn.Module  # a run-time base class

        class HiddenStates(module):
            def __init__(self):
                super().__init__()
                self.m = auto_model

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                kw = {"input_ids": input_ids, "attention_mask": attention_mask}
                if "token_type_ids" in names:
                    kw["token_type_ids"] = token_type_ids
                return self.m(**kw).last_hidden_state

        return HiddenStates().eval()


def embedding_dim(dim: int | None) -> int:
    """The model's embedding dimension; a typed error for a model without a fixed one."""
    if dim is None:
        raise InputError("the embedding model has no fixed output dimension; pick another model")
    return int(dim)


def model_key(model: SentenceTransformer) -> str:
    """Fingerprint of the transformer's weights and config plus the converter versions (computed
    once per loaded model)."""
    cached = getattr(model, "_retriever_weights_key", None)
    if cached:
        return cached
    ov = _require_openvino()
    torch = require("torch")
    transformers = require("transformers")
    auto: Any = model[0].auto_model
    h = hashlib.sha1()
    h.update(
        json.dumps(
            [
                type(auto).__name__,
                ov.__version__,
                torch.__version__,
                transformers.__version__,
                auto.config.to_json_string(),
            ]
        ).encode()
    )
    with torch.no_grad():
        for name, t in auto.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().contiguous().cpu().numpy().tobytes())
    key = h.hexdigest()[:20]
    setattr(model, "_retriever_weights_key", key)  # noqa: B010 (cached on the model)
    return key


class OpenVINOEncoder:
    """Encodes texts with the transformer of ``model`` compiled by OpenVINO for the CPU.

    Args:
        model: a loaded sentence-transformers model whose first module is a HF transformer
            (BERT-like models: all-MiniLM, mpnet, e5, bge, gte ...).
        threads: CPU threads for inference (``None``: ``torch.get_num_threads()``).
        precision: ``"auto"`` (:func:`auto_precision`: bf16 with AMX, else fp32), ``"f32"`` or
        ``"bf16"``. pinning: OpenVINO's ``ENABLE_CPU_PINNING`` (``None``: OpenVINO's default).
        pad_multiple: pad token tensors to a multiple of this many positions (fewer shapes).
        group_lengths: split each batch into forwards by token length (:func:`length_groups`)
            instead of padding every text to the longest (a query server's batches mix
            lengths; scoring's are sorted and mostly cut at the same length).
        lanes: forwards that may run at once, from different Python threads (``encode(...,
            lane=i)``), each on its own inference request and OpenVINO stream of ``threads``
            threads (a query server on several cores: two one-thread forwards instead of one
            two-thread forward). 1: one request.
        extra_config: more OpenVINO CPU properties (``PERFORMANCE_HINT``, ``NUM_STREAMS`` ...).
        cache_dir: where converted models are kept (``None``: :func:`cache_root`); ``False`` to
            convert in memory only.

    Raises:
        MissingDependencyError: ``openvino`` is not installed (``pip install 'retriever[fast]'``).
        InputError: the model cannot be converted (not a transformer sentence-transformers model).
    """

    def __init__(
        self,
        model: SentenceTransformer,
        threads: int | None = None,
        precision: str = "auto",
        cache_dir: str | os.PathLike | bool | None = None,
        pinning: bool | None = None,
        pad_multiple: int = 1,
        extra_config: dict[str, Any] | None = None,
        lanes: int = 1,
        group_lengths: bool = False,
    ):
        if precision not in PRECISIONS:
            raise InputError(f"OpenVINO precision must be one of {PRECISIONS}, got {precision!r}")
        if int(lanes) < 1:
            raise InputError(f"lanes must be >= 1, got {lanes}")
        ov = _require_openvino()
        torch = require("torch")
        self.model = model
        modules = list(model)
        if not modules or not hasattr(modules[0], "auto_model"):
            raise InputError(
                "the OpenVINO path needs a sentence-transformers model whose first module is a "
                "transformer; use backend='torch' for this model"
            )
        self._post = modules[1:]  # pooling, dense, normalize: run in torch on the hidden states
        probe = _features(model, ["a short text", "another, slightly longer text"])
        self.input_names = tuple(k for k in _INPUTS if k in probe)
        ov_model = self._load_or_convert(ov, torch, probe, cache_dir)
        self.threads = int(threads or torch.get_num_threads())
        self.lanes = int(lanes)
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": self.threads * self.lanes}
        if self.lanes > 1:
            config["NUM_STREAMS"] = self.lanes
        if precision == "auto":
            precision = auto_precision()
        config["INFERENCE_PRECISION_HINT"] = precision
        if pinning is not None:
            config["ENABLE_CPU_PINNING"] = bool(pinning)
        config.update(extra_config or {})
        self.pad_multiple = max(1, int(pad_multiple))
        self.group_lengths = bool(group_lengths)
        self.compiled = ov.Core().compile_model(ov_model, "CPU", config)
        self._requests = [self.compiled.create_infer_request() for _ in range(self.lanes)]
        # a fast tokenizer resets its truncation settings per call: two threads at once raise
        # "Already borrowed", so lanes tokenize one at a time (~1 ms a text) and infer in parallel
        self._tokenize_lock = threading.Lock()
        # seconds spent per part, summed over every encode (the query server reports them)
        self.seconds = {"tokenize": 0.0, "forward": 0.0, "post": 0.0}
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = (
            hint.to_string() if hasattr(hint, "to_string") else str(hint)
        )  # "bf16", "f32"

    def _load_or_convert(self, ov, torch, probe, cache_dir):
        if cache_dir is False:
            return self._convert(ov, torch, probe)
        folder = Path(cache_dir or cache_root() / "openvino") / model_key(self.model)
        xml = folder / "model.xml"
        if xml.is_file():
            return ov.Core().read_model(str(xml))
        ov_model = self._convert(ov, torch, probe)
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            # fp16 weight compression would change the vectors: keep fp32 weights on disk
            ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
            try:
                os.replace(tmp, folder)
            except OSError:  # another process cached it first: keep theirs
                pass
        except OSError as e:
            log.warning(
                "could not cache the OpenVINO model in %s (%s); converting each time", folder, e
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return ov_model

    def _convert(self, ov, torch, probe):
        t0 = time.perf_counter()
        wrapper = _HiddenStates.make(self.model[0].auto_model, self.input_names)
        example = {k: probe[k] for k in self.input_names}
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # tracing warns about python-bool branches (padding/causal checks) that are constant
                # for an encoder with an attention mask; the cosine check in the tests covers them
                warnings.simplefilter("ignore")
                ov_model = ov.convert_model(wrapper, example_input=example)
        except Exception as e:  # the converter raises many types; say what to do instead
            raise InputError(
                f"OpenVINO could not convert this model ({type(e).__name__}: {e}); "
                "use backend='torch'"
            ) from e
        for port, name in zip(ov_model.inputs, self.input_names, strict=True):
            port.get_tensor().set_names({name})
        log.info("converted the embedding model to OpenVINO in %.1fs", time.perf_counter() - t0)
        return ov_model

    def encode(self, texts: list[str], batch_size: int = 64, lane: int = 0) -> np.ndarray:
        """Unit vectors ``[len(texts), dim]`` float32; batches are formed longest text first.

        Sorting by length (as sentence-transformers does) keeps padding small inside a batch.
        ``lane``: which inference request (``0 .. lanes - 1``); two threads must not use the same
        lane at once.
        """
        torch = require("torch")
        request = self._requests[lane]
        n = len(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out: np.ndarray | None = None
        sec = self.seconds
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            t0 = time.perf_counter()
            with self._tokenize_lock:
                feats = _features(self.model, [texts[j] for j in idx])
            if self.pad_multiple > 1:
                feats = _pad(feats, self.pad_multiple, torch)
            sec["tokenize"] += time.perf_counter() - t0
            m = self.pad_multiple
            if self.group_lengths and len(idx) > 1:
                lens = feats["attention_mask"].sum(1).tolist()
                groups = length_groups([-(-x // m) * m for x in lens])
                if len(groups) == 1:  # one forward: the rows as they are
                    groups = [list(range(len(idx)))]
            else:
                groups = [list(range(len(idx)))]
            for g in groups:
                if len(groups) > 1:  # these rows, cut at their longest (padded) length
                    width = -(-max(lens[i] for i in g) // m) * m
                    rows = torch.tensor(g)
                    part = {k: v[rows, :width] for k, v in feats.items() if k in _INPUTS}
                else:
                    part = feats
                emb = self._forward(request, part, torch)  # [len(g), dim]
                if out is None:
                    out = np.empty((n, emb.shape[1]), dtype=np.float32)
                out[idx[g]] = emb
        if out is None:
            return np.zeros((0, self.dim), dtype=np.float32)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def warm(self, max_batch: int, max_length: int) -> int:
        """Run one forward of every shape ``(b, n)``, ``b <= max_batch``, ``n`` a multiple of
        ``pad_multiple`` up to ``max_length``, on every lane, so that the compiled model holds
        them all before serving (memory and first-forward time paid at start). Returns the
        shapes run per lane."""
        m = self.pad_multiple
        if m <= 1:
            return 0  # unpadded: every length is a shape; nothing bounded to warm
        lengths = range(m, -(-max_length // m) * m + 1, m)
        for request in self._requests:
            for n in lengths:
                for b in range(1, max_batch + 1):
                    feed = {k: np.zeros((b, n), dtype=np.int64) for k in self.input_names}
                    feed["input_ids"][:] = 100  # [UNK]-like ids; the values do not matter
                    feed["attention_mask"][:] = 1
                    request.infer(feed)
        return len(lengths) * max_batch

    def _forward(self, request, feats: dict[str, Any], torch) -> np.ndarray:
        """Sentence embeddings ``[b, dim]`` of tokenized ``feats`` (not yet normalized)."""
        t1 = time.perf_counter()
        feed = {k: feats[k].numpy() for k in self.input_names}
        hidden = request.infer(feed)[0]  # [b, seq, hidden], a copy (share_outputs=False)
        t2 = time.perf_counter()
        feats = dict(feats)
        feats["token_embeddings"] = torch.from_numpy(np.asarray(hidden, dtype=np.float32))
        with torch.no_grad():
            for mod in self._post:
                feats = mod(feats)
        emb = feats["sentence_embedding"].float().numpy()
        self.seconds["forward"] += t2 - t1
        self.seconds["post"] += time.perf_counter() - t2
        return emb

    @property
    def dim(self) -> int:
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return embedding_dim(get_dim())
