"""Small inline-SVG charts: histogram, scatter, curves, horizontal bars. Plain strings, no deps.

Every chart is one ``<svg class="plot KIND">`` with a ``<title>``, axes with ticks, and elements
of stable classes (``bar``, ``pt``, ``curve``, ``thr``) so a test can count what is drawn. No
``xmlns`` or other URL: inline SVG in HTML5 needs none, and the report must open offline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np
from numpy.typing import ArrayLike

W, H = 560, 300  # chart size in px
ML, MR, MT, MB = 56, 16, 42, 44  # margins: left, right, top (title + legend row), bottom
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
LABEL_COLORS = {"positive": "#2ca02c", "negative": "#d62728", "uncertain": "#ff7f0e"}


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        return f"{v:.1e}"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    out = []
    v = start
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


class _Frame:
    """Maps data coordinates to pixels and draws axes."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float):
        if x1 <= x0:
            x0, x1 = x0 - 0.5, x0 + 0.5
        if y1 <= y0:
            y0, y1 = y0 - 0.5, y0 + 0.5
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def x(self, v: float) -> float:
        return ML + (v - self.x0) / (self.x1 - self.x0) * (W - ML - MR)

    def y(self, v: float) -> float:
        return H - MB - (v - self.y0) / (self.y1 - self.y0) * (H - MT - MB)

    def axes(self, xlabel: str, ylabel: str) -> list[str]:
        out = [
            f'<line class="axis" x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" '
            'stroke="#333"/>',
            f'<line class="axis" x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}" stroke="#333"/>',
        ]
        for t in nice_ticks(self.x0, self.x1):
            px = self.x(t)
            out.append(
                f'<line x1="{px:.1f}" y1="{H - MB}" x2="{px:.1f}" y2="{H - MB + 4}" stroke="#333"/>'
            )
            out.append(
                f'<text class="tick" x="{px:.1f}" y="{H - MB + 16}" '
                f'text-anchor="middle">{_fmt(t)}</text>'
            )
        for t in nice_ticks(self.y0, self.y1):
            py = self.y(t)
            out.append(f'<line x1="{ML - 4}" y1="{py:.1f}" x2="{ML}" y2="{py:.1f}" stroke="#333"/>')
            out.append(
                f'<text class="tick" x="{ML - 6}" y="{py + 4:.1f}" '
                f'text-anchor="end">{_fmt(t)}</text>'
            )
        out.append(
            f'<text class="xlabel" x="{(ML + W - MR) / 2:.0f}" y="{H - 8}" text-anchor="middle">'
            f"{escape(xlabel)}</text>"
        )
        out.append(
            f'<text class="ylabel" x="14" y="{(MT + H - MB) / 2:.0f}" text-anchor="middle" '
            f'transform="rotate(-90 14 {(MT + H - MB) / 2:.0f})">{escape(ylabel)}</text>'
        )
        return out

    def vline(self, v: float, label: str, color: str = "#d62728") -> list[str]:
        if not (self.x0 <= v <= self.x1):
            return []
        px = self.x(v)
        return [
            f'<line class="thr" x1="{px:.1f}" y1="{MT}" x2="{px:.1f}" y2="{H - MB}" '
            f'stroke="{color}" stroke-width="2" stroke-dasharray="5 3"/>',
            f'<text class="thr-label" x="{px + 4:.1f}" y="{MT + 12}" '
            f'fill="{color}">{escape(label)}</text>',
        ]

    def hline(self, v: float, label: str, color: str = "#d62728") -> list[str]:
        if not (self.y0 <= v <= self.y1):
            return []
        py = self.y(v)
        return [
            f'<line class="thr" x1="{ML}" y1="{py:.1f}" x2="{W - MR}" y2="{py:.1f}" '
            f'stroke="{color}" stroke-width="1.5" stroke-dasharray="5 3"/>',
            f'<text class="thr-label" x="{W - MR - 4}" y="{py - 4:.1f}" text-anchor="end" '
            f'fill="{color}">{escape(label)}</text>',
        ]


def _svg(
    kind: str, title: str, body: list[str], legend: list[tuple[str, str]] | None = None
) -> str:
    parts = [
        f'<svg class="plot {kind}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="plot-title" x="{ML}" y="16">{escape(title)}</text>',
        *body,
    ]
    x = ML
    for name, color in legend or []:  # one row under the title, left to right
        parts.append(f'<rect class="key" x="{x}" y="22" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text class="legend" x="{x + 14}" y="31">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "\n".join(parts)


def histogram_svg(
    counts: ArrayLike,
    edges: ArrayLike,
    *,
    title: str,
    xlabel: str,
    ylabel: str = "documents",
    thresholds: Sequence[tuple[float, str]] = (),
) -> str:
    """Bars of ``counts`` (``[n_bins]``) over ``edges`` (``[n_bins + 1]``), with threshold lines."""
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    f = _Frame(float(edges[0]), float(edges[-1]), 0.0, float(counts.max()) if len(counts) else 1.0)
    body = f.axes(xlabel, ylabel)
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        if c <= 0:
            continue
        x, y = f.x(a), f.y(c)
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(0.5, f.x(b) - x - 0.5):.1f}" '
            f'height="{f.y(0) - y:.1f}" fill="{PALETTE[0]}"><title>{_fmt(a)}..{_fmt(b)}: {int(c)}'
            "</title></rect>"
        )
    for v, label in thresholds:
        body += f.vline(float(v), label)
    return _svg("hist", title, body)


def scatter_svg(
    groups: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    vlines: Sequence[tuple[float, str]] = (),
    hlines: Sequence[tuple[float, str]] = (),
    max_points: int = 3000,
    seed: int = 0,
) -> str:
    """Points per group (a colour each; ``positive``/``negative``/``uncertain`` get fixed colours).

    More than ``max_points`` points in all are subsampled (seeded), keeping the file small.
    """
    clean = {}
    for name, (gx, gy) in groups.items():
        x = np.asarray(gx, dtype=np.float64)
        y = np.asarray(gy, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        clean[name] = (x[ok], y[ok])
    total = sum(len(x) for x, _ in clean.values())
    allx = np.concatenate([x for x, _ in clean.values()] + [np.zeros(0)])
    ally = np.concatenate([y for _, y in clean.values()] + [np.zeros(0)])
    if total == 0:
        f = _Frame(0, 1, 0, 1)
    else:
        padx = 0.03 * (np.ptp(allx) or 1)
        pady = 0.03 * (np.ptp(ally) or 1)
        f = _Frame(allx.min() - padx, allx.max() + padx, ally.min() - pady, ally.max() + pady)
    body = f.axes(xlabel, ylabel)
    rng = np.random.default_rng(seed)
    legend = []
    for k, (name, (x, y)) in enumerate(clean.items()):
        color = LABEL_COLORS.get(name, PALETTE[k % len(PALETTE)])
        legend.append((f"{name} ({len(x):,})", color))
        keep = np.arange(len(x))
        if total > max_points:
            keep = rng.choice(len(x), size=max(1, int(len(x) * max_points / total)), replace=False)
        for i in keep:
            body.append(
                f'<circle class="pt" cx="{f.x(x[i]):.1f}" cy="{f.y(y[i]):.1f}" r="2.5" '
                f'fill="{color}" fill-opacity="0.6"/>'
            )
    for v, label in vlines:
        body += f.vline(float(v), label, "#555")
    for v, label in hlines:
        body += f.hline(float(v), label, "#555")
    return _svg("scatter", title, body, legend)


def curve_svg(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    points: Sequence[tuple[float, float, str]] = (),
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
) -> str:
    """Polylines (one per curve) plus marked points (e.g. the operating threshold)."""
    f = _Frame(*x_range, *y_range)
    body = f.axes(xlabel, ylabel)
    legend = []
    for k, (name, (x, y)) in enumerate(curves.items()):
        color = PALETTE[k % len(PALETTE)]
        pts = " ".join(f"{f.x(a):.1f},{f.y(b):.1f}" for a, b in zip(x, y, strict=True))
        body.append(
            f'<polyline class="curve" points="{pts}" fill="none" stroke="{color}" '
            'stroke-width="2"/>'
        )
        legend.append((name, color))
    for px, py, label in points:
        body.append(
            f'<circle class="op" cx="{f.x(px):.1f}" cy="{f.y(py):.1f}" r="5" fill="#d62728"/>'
        )
        right = f.x(px) > W - MR - 90  # near the right edge: label on the left of the point
        anchor = ' text-anchor="end"' if right else ""
        lx = f.x(px) - 8 if right else f.x(px) + 8
        body.append(
            f'<text class="op-label" x="{lx:.1f}" '
            f'y="{f.y(py) + 16:.1f}"{anchor}>{escape(label)}</text>'
        )
    return _svg("curve", title, body, legend)


LABEL_CHARS = 56  # longer bar labels are shortened in the middle (the full one is in the tooltip)


def _short(label: str, n: int = LABEL_CHARS) -> str:
    """``label`` itself, or its start and end around an ellipsis when longer than ``n``."""
    if len(label) <= n:
        return label
    head = (n - 1) // 2
    return label[:head] + "\u2026" + label[-(n - 1 - head) :]


def bars_svg(
    items: Sequence[tuple[str, float, str]], *, title: str, xlabel: str, x_max: float | None = None
) -> str:
    """Horizontal bars: ``(label, value, annotation)`` per row (height grows with the rows)."""
    rows = list(items)
    h = max(80, 24 * len(rows) + MT + 36)
    vmax = x_max if x_max is not None else max([v for _, v, _ in rows] + [1e-12])
    labels = [_short(label) for label, _, _ in rows]
    # the label column fits the longest label (~6.5 px a character at 11 px); the chart widens with
    # it
    left = int(min(24 + 6.5 * max([len(x) for x in labels] + [0]), 24 + 6.5 * LABEL_CHARS))
    left, right = max(left, 120), 110
    width = max(W, left + 300 + right)
    span = width - left - right
    body = []
    for k, (label, v, note) in enumerate(rows):
        y = MT + 8 + 24 * k
        wpx = max(0.0, span * (v / vmax if vmax else 0))
        body.append(
            f'<text class="bar-label" x="{left - 6}" y="{y + 13}" '
            f'text-anchor="end">{escape(labels[k])}</text>'
        )
        body.append(
            f'<rect class="bar" x="{left}" y="{y}" width="{wpx:.1f}" height="16" '
            f'fill="{PALETTE[0]}">'
            f"<title>{escape(label)}: {escape(note)}</title></rect>"
        )
        body.append(
            f'<text class="bar-note" x="{left + wpx + 6:.1f}" y="{y + 13}">{escape(note)}</text>'
        )
    body.append(f'<text class="xlabel" x="{left}" y="{h - 8}">{escape(xlabel)}</text>')
    return (
        f'<svg class="plot bars" viewBox="0 0 {width} {h}" width="{width}" height="{h}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text class="plot-title" x="{ML}" y="16">{escape(title)}</text>'
        + "\n".join(body)
        + "</svg>"
    )


def pr_curve(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Precision-recall curve of labels ``y`` (1 = positive) ranked by ``p``.

    Returns:
        ``(recall [k], precision [k], thresholds [k], average_precision)``: one point per distinct
        score, thresholds descending; AP is the step-wise area (as scikit-learn computes it).
    """
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    if not y.any():
        return np.zeros(0), np.zeros(0), np.zeros(0), float("nan")
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    tp = np.cumsum(ys)  # [n]
    n = np.arange(1, len(ys) + 1)
    last = np.r_[np.nonzero(np.diff(ps))[0], len(ps) - 1]  # last index of each distinct score
    recall = tp[last] / y.sum()
    precision = tp[last] / n[last]
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return recall, precision, ps[last], ap
