"""The one progress bar of every long step (index build, score, confirm, distill, filter, dataset).

A tqdm bar on stderr with a rate (docs/s) and, when the total is known, an ETA. Bars are off when
stderr is not a terminal (logs, CI, pipes) and everywhere after :func:`set_quiet` (``--quiet``).
Stages take ``progress: bool | None``: ``None`` follows the rule above, ``True`` / ``False`` force
it (``--quiet`` still wins).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tqdm import tqdm as Tqdm

_QUIET = False


def set_quiet(quiet: bool = True) -> None:
    """Turn every bar off for this process (the CLI's ``--quiet``)."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    return _QUIET


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether a bar is shown: never when quiet; else ``progress``, or a terminal on stderr."""
    if _QUIET:
        return False
    if progress is not None:
        return bool(progress)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | float | None = None,
    desc: str = "",
    unit: str = "doc",
    progress: bool | None = None,
    leave: bool = False,
    **kwargs: Any,
) -> Tqdm:
    """A tqdm bar (disabled as :func:`progress_enabled` says); use as iterator or with ``update``.

    Args:
        iterable: wrapped iterable (``None``: call ``update(n)`` yourself).
        total: number of units (``len(iterable)`` when it has one); gives the ETA.
        desc: what is being done, shown first (``"embed function-calling"``).
        unit: what a unit is (``doc``, ``shard``, ``model``); the rate is ``unit/s``.
        progress: see :func:`progress_enabled`.
        leave: keep the finished bar on screen.
    """
    from tqdm.auto import tqdm

    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        file=sys.stderr,
        disable=not progress_enabled(progress),
        dynamic_ncols=True,
        smoothing=0.1,
        **kwargs,
    )


def encode_with_progress(
    embedder: Any,
    texts: Sequence[str],
    desc: str = "embed",
    progress: bool | None = None,
    chunk: int | None = None,
) -> np.ndarray:
    """``embedder.encode(texts)`` in chunks, with a bar of texts embedded; ``[len(texts), dim]``.

    Chunks are large (8 batches) so the embedder's own length sorting still pads little. Without a
    bar the texts go to ``encode`` in one call, exactly as before.
    """
    texts = list(texts)
    if not progress_enabled(progress) or not texts:
        return embedder.encode(texts)
    chunk = chunk or max(256, 8 * int(getattr(embedder, "batch_size", 32) or 32))
    parts = []
    with progress_bar(total=len(texts), desc=desc, unit="doc", progress=progress) as bar:
        for i in range(0, len(texts), chunk):
            part = texts[i : i + chunk]
            parts.append(embedder.encode(part))
            bar.update(len(part))
        bar.refresh()  # the final count is shown even when the last update fell within mininterval
    return np.concatenate(parts, axis=0)
