"""``render_report``: plain data (dicts, arrays, pyarrow tables) -> one self-contained HTML page.

Nothing here reads files: :mod:`retriever.report.collect` gathers the data from a run folder, so
the page can be tested with hand-made inputs. Every section appears only when its data is given;
the page lists what was not found, so an absent plot is never mistaken for an empty result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import numpy as np

from retriever.report.svg import bars_svg, curve_svg, histogram_svg, pr_curve, scatter_svg

SAMPLE_CHARS = 600  # characters of a sample shown before "more"
SAMPLE_FULL_CHARS = 4000  # characters kept in the expandable part
SAMPLE_KINDS = ("kept", "borderline", "rejected")

CSS = """
.flag{color:#b00020;font-weight:600}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;
  color:#222;background:#fafafa}
header{background:#223;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#ccd}nav{padding:8px 28px;background:#eef;font-size:13px}
nav a{margin-right:14px;color:#224}main{padding:8px 28px 40px;max-width:1240px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 18px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:14px 0 6px}
.grid{display:flex;flex-wrap:wrap;gap:14px}.fig{border:1px solid #eee;padding:4px}
table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f7}td.l,th.l{text-align:left}
.sample{border-left:4px solid #999;padding:4px 10px;margin:8px 0;background:#fcfcfc}
.sample.kept{border-color:#2ca02c}.sample.borderline{border-color:#ff7f0e}
.sample.rejected{border-color:#d62728}
.sample .meta{font-size:12px;color:#555}
.sample pre{white-space:pre-wrap;margin:4px 0;font:12.5px/1.4 ui-monospace,monospace}
.muted{color:#777}.plot text{font-size:11px;fill:#333}
.plot .plot-title{font-size:13px;font-weight:600}
"""


def render_report(
    title: str = "retriever report",
    *,
    facts: Mapping[str, Any] | None = None,
    scores: Mapping[str, Mapping[str, Any]] | None = None,
    labels: Mapping[str, Any] | None = None,
    label_rules: Mapping[str, Mapping[str, Any]] | None = None,
    pr: Mapping[str, Mapping[str, Any]] | None = None,
    kept: Mapping[str, Mapping[str, Any]] | None = None,
    samples: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
    dataset: Mapping[str, Any] | None = None,
    mixture: Mapping[str, Any] | None = None,
    arms: Mapping[str, Any] | None = None,
    band: Mapping[str, Any] | None = None,
    ratings: Mapping[str, Any] | None = None,
    domains: Mapping[str, Any] | None = None,
    missing: Sequence[str] = (),
) -> str:
    """Render the run report as one HTML string (inline CSS and SVG; no script, no URL).

    Args:
        title: page title.
        facts: run-level numbers shown first (``{"docs in": 1000, ...}``).
        scores: per task, the similarity score distribution: ``{"counts": [...], "edges": [...]}``
            (or ``{"values": [...]}``), plus ``threshold`` (float or None) and ``rule`` (str).
        labels: per task, a pyarrow table or dict of columns ``similarity``, ``correlation``,
            ``label`` (the confirm stage's labels).
        label_rules: per task, ``positive_min``, ``negative_max`` (correlation thresholds),
            ``similarity_cutoff`` and ``estimator``, drawn on the scatter.
        pr: per task, the distilled filter's held-out ``{"y": [...], "p": [...]}`` (a curve), or
            its metrics only (``precision``, ``recall``, ``threshold``, ``average_precision``,
            ``roc_auc``: one point).
        kept: per task, ``{"by": "cluster"|"source", "groups": {name: {"kept": n, "seen": m}}}``
            (``seen`` may be None: counts are then shown without a share).
        samples: per task, ``{"kept"|"borderline"|"rejected": [{"id", "text", "scores": {..},
            "why": str}]}``.
        dataset: a ``build-dataset`` summary (tokens per pool and cluster).
        mixture: a ``mix fit`` result.
        arms: a ``retriever evaluate`` summary (its ``table`` of intervals per arm and task).
        band: a ``retriever band`` summary (BPB ``histogram``, ``cut_low_bpb`` / ``cut_high_bpb``
            at quantiles ``low`` / ``high``, counts, Spearman with similarity).
        ratings: a ``retriever rate`` summary (per task ``histogram`` of 0-5 scores, counts,
            labels; the model).
        domains: a ``retriever domains`` summary (``domains.json``: per domain its size, share,
            top terms and sample previews; the method).
        missing: names of artifacts that were looked for and not found.
    """
    sections: list[tuple[str, str, str]] = []  # (id, title, html)
    if facts:
        sections.append(("summary", "Summary", _facts(facts)))
    if scores:
        sections.append(("scores", "Score distributions", _scores(scores)))
    if labels:
        sections.append(
            (
                "correlation",
                "Similarity vs perplexity correlation",
                _scatter(labels, label_rules or {}),
            )
        )
    if pr:
        sections.append(("pr", "Distilled filter: precision-recall", _pr(pr)))
    if kept:
        sections.append(("kept", "Kept share per source / cluster", _kept(kept)))
    if ratings:
        sections.append(("ratings", "LLM ratings", _ratings(ratings)))
    if band:
        sections.append(("band", "Perplexity band", _band(band)))
    if domains:
        sections.append(("domains", "Domains", _domains(domains)))
    if dataset:
        sections.append(("dataset", "Training set", _dataset(dataset)))
    if mixture:
        sections.append(("mixture", "Mixture search (RegMix)", _mixture(mixture)))
    if arms:
        sections.append(("arms", "Ablation arms: proxies trained on each selection", _arms(arms)))
    if samples:
        sections.append(("samples", "Samples: kept, borderline, rejected", _samples(samples)))
    if missing:
        items = "".join(f"<li>{escape(m)}</li>" for m in missing)
        sections.append(
            (
                "missing",
                "Not in this report",
                f"<p>These artifacts were not found:</p><ul>{items}</ul>",
            )
        )
    nav = " ".join(f'<a href="#{sid}">{escape(t)}</a>' for sid, t, _ in sections)
    body = "\n".join(
        f'<section id="{sid}">\n<h2>{escape(t)}</h2>\n{html}\n</section>'
        for sid, t, html in sections
    )
    if not sections:
        body = (
            '<section id="empty"><h2>Nothing to report</h2><p>No run artifact was '
            "found.</p></section>"
        )
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        f"<header><h1>{escape(title)}</h1><p>generated {stamp} by retriever</p></header>\n"
        f"<nav>{nav}</nav>\n<main>\n{body}\n</main>\n</body></html>\n"
    )


# -- sections --------------------------------------------------------------------------------------
def _facts(facts: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><td class="l">{escape(str(k))}</td><td>{escape(_val(v))}</td></tr>'
        for k, v in facts.items()
    )
    return f"<table>{rows}</table>"


def _scores(scores: Mapping[str, Mapping[str, Any]]) -> str:
    figs = []
    for task, d in scores.items():
        if "counts" in d:
            counts, edges = np.asarray(d["counts"]), np.asarray(d["edges"])
        else:
            v = np.asarray(d.get("values", []), dtype=np.float64)
            v = v[np.isfinite(v)]
            counts, edges = (
                np.histogram(v, bins=50) if len(v) else (np.zeros(1), np.array([0.0, 1.0]))
            )
        thr = d.get("threshold")
        lines = (
            [(float(thr), f"threshold {thr:.3f}")] if thr is not None and math.isfinite(thr) else []
        )
        svg = histogram_svg(
            counts,
            edges,
            title=f"{task}: max cosine to gold",
            xlabel="similarity",
            thresholds=lines,
        )
        n = int(np.sum(counts))
        cap = f"{n:,} documents; rule: {escape(str(d.get('rule') or 'none'))}"
        if d.get("candidates") is not None:
            cap += f"; {int(d['candidates']):,} candidates"
        figs.append(f'<div class="fig">{svg}<div class="muted">{cap}</div></div>')
    return f'<div class="grid">{"".join(figs)}</div>'


def _ratings(r: Mapping[str, Any]) -> str:
    figs = []
    for task, d in (r.get("tasks") or {}).items():
        hist = d.get("histogram") or {}
        n = sum(int(v) for v in hist.values()) or 1
        items = [
            (f"score {k}", float(hist.get(str(k), 0)), f"{int(hist.get(str(k), 0)):,}")
            for k in range(5, -1, -1)
        ]
        svg = bars_svg(items, title=f"{task}: rated by {r.get('model', '?')}", xlabel="documents")
        lab = d.get("labels") or {}
        rej = d.get("rejected") or {}
        cap = (
            f"{_val(d.get('rated'))} rated of {_val(d.get('docs_in'))} ({n:,} with a score); "
            f"labels {_val(lab.get('positive'))} positive / {_val(lab.get('negative'))} negative"
            + (
                f"; rejected {', '.join(f'{k} {v:,}' for k, v in sorted(rej.items()))}"
                if rej
                else ""
            )
            + (f"; {_val(d.get('over_budget'))} over budget" if d.get("over_budget") else "")
        )
        figs.append(f'<div class="fig">{svg}<div class="muted">{escape(cap)}</div></div>')
    return f'<div class="grid">{"".join(figs)}</div>'


def _domains(d: Mapping[str, Any], limit: int = 40) -> str:
    doms = list(d.get("domains") or [])
    head = (
        "<tr><th class='l'>domain</th><th>documents</th><th>share</th>"
        "<th class='l'>top terms</th><th class='l'>sample</th></tr>"
    )
    rows = []
    for x in doms[:limit]:
        sample = (x.get("samples") or [""])[0]
        rows.append(
            f"<tr><td class='l'>{escape(str(x.get('domain')))}</td><td>{x.get('size', 0):,}</td>"
            f"<td>{float(x.get('share') or 0):.1%}</td>"
            f"<td class='l'>{escape(', '.join(map(str, x.get('top_terms') or [])))}</td>"
            f"<td class='l'>{escape(str(sample)[:160])}</td></tr>"
        )
    more = f" (the {limit} largest shown)" if len(doms) > limit else ""
    cap = (
        f"{len(doms)} domains by {escape(str(d.get('method', '?')))} over "
        f"{_val(d.get('n_docs'))} documents{more}"
    )
    return f"<p class='muted'>{cap}</p><table>{head}{''.join(rows)}</table>"


def _band(b: Mapping[str, Any]) -> str:
    h = b.get("histogram") or {}
    counts, edges = h.get("counts") or [], h.get("edges") or [0.0, 1.0]
    lines = []
    for key, q in (("cut_low_bpb", b.get("low")), ("cut_high_bpb", b.get("high"))):
        v = b.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            lines.append((float(v), f"q{q} = {v:.3f}"))
    svg = histogram_svg(
        counts or [0],
        edges if counts else [0.0, 1.0],
        title=f"BPB under {b.get('model_name', 'the reference model')}",
        xlabel="bits per byte",
        thresholds=lines,
    )
    cap = (
        f"{_val(b.get('in_band'))} in band, {_val(b.get('below_band'))} below (too predictable), "
        f"{_val(b.get('above_band'))} above (noise) of {_val(b.get('docs_in'))} documents"
    )
    rho = b.get("spearman_bpb_vs_similarity") or {}
    if rho:
        cap += "; Spearman(BPB, similarity): " + ", ".join(
            f"{t} {_val(r)}" for t, r in sorted(rho.items())
        )
    return f'<div class="fig">{svg}<div class="muted">{escape(cap, quote=False)}</div></div>'


def _columns(t: Any) -> dict[str, list]:
    if hasattr(t, "column_names"):  # pyarrow table
        return {c: t.column(c).to_pylist() for c in t.column_names if c != "text"}
    return {k: list(v) for k, v in t.items()}


def _scatter(labels: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]]) -> str:
    figs = []
    for task, t in labels.items():
        cols = _columns(t)
        sim = np.asarray(cols.get("similarity", []), dtype=np.float64)
        cor = np.asarray(cols.get("correlation", []), dtype=np.float64)
        lab = np.asarray(cols.get("label", []), dtype=object)
        groups = {}
        for name in ("positive", "uncertain", "negative"):
            m = lab == name
            if m.any():
                groups[name] = (sim[m], cor[m])
        r = rules.get(task, {})
        hl = [
            (r[k], f"{k} {r[k]:g}")
            for k in ("positive_min", "negative_max")
            if r.get(k) is not None
        ]
        vl = (
            [(r["similarity_cutoff"], "candidate cutoff")]
            if r.get("similarity_cutoff") is not None
            else []
        )
        est = r.get("estimator", "correlation")
        svg = scatter_svg(
            groups,
            title=f"{task}: similarity vs {est}",
            xlabel="similarity (max cosine)",
            ylabel=f"perplexity correlation ({est})",
            vlines=vl,
            hlines=hl,
        )
        n_nan = int(np.sum(~np.isfinite(cor)))
        counts = ", ".join(
            f"{k} {int(np.sum(lab == k)):,}" for k in ("positive", "uncertain", "negative")
        )
        note = f"{counts}" + (f"; {n_nan:,} without a correlation (not drawn)" if n_nan else "")
        figs.append(f'<div class="fig">{svg}<div class="muted">{escape(note)}</div></div>')
    return f'<div class="grid">{"".join(figs)}</div>'


def _pr(pr: Mapping[str, Mapping[str, Any]]) -> str:
    figs: list[str] = []
    rows: list[tuple] = []
    op_p: float | None
    op_r: float | None
    for task, d in pr.items():
        thr = d.get("threshold", 0.5)
        if d.get("y") is not None and d.get("p") is not None:
            y = np.asarray(d["y"], dtype=bool)
            p = np.asarray(d["p"], dtype=np.float64)
            rec, prec, ths, ap = pr_curve(y, p)
            pred = p >= thr
            tp = int((pred & y).sum())
            op_p = tp / max(1, int(pred.sum()))
            op_r = tp / max(1, int(y.sum()))
            base = float(y.mean()) if len(y) else float("nan")
            svg = curve_svg(
                {
                    f"held-out (n={len(y):,})": (
                        np.r_[0.0, rec],
                        np.r_[prec[:1] if len(prec) else [1.0], prec],
                    ),
                    f"base rate {base:.2f}": ([0, 1], [base, base]),
                },
                title=f"{task}: precision-recall",
                xlabel="recall",
                ylabel="precision",
                points=[(op_r, op_p, f"p >= {thr:g}")],
            )
            rows.append((task, op_p, op_r, thr, ap, d.get("roc_auc"), len(y)))
        else:
            op_p, op_r = d.get("precision"), d.get("recall")
            if op_p is None or op_r is None:
                continue
            svg = curve_svg(
                {},
                title=f"{task}: precision-recall (operating point only)",
                xlabel="recall",
                ylabel="precision",
                points=[(op_r, op_p, f"p >= {thr:g}")],
            )
            rows.append(
                (task, op_p, op_r, thr, d.get("average_precision"), d.get("roc_auc"), d.get("n"))
            )
        note = ""
        if d.get("y") is None:
            note = (
                '<div class="muted">operating point from the filter manifest; a full curve needs '
                "held-out predictions (M.heldout.parquet with y, p)</div>"
            )
        figs.append(f'<div class="fig">{svg}{note}</div>')
    checks = _student_checks(pr)
    head = (
        "<tr><th class='l'>task</th><th>precision</th><th>recall</th><th>threshold</th><th>avg "
        "precision</th><th>ROC-AUC</th><th>held-out n</th></tr>"
    )
    body = "".join(
        f"<tr><td class='l'>{escape(t)}</td>"
        + "".join(f"<td>{_val(v)}</td>" for v in vals)
        + "</tr>"
        for t, *vals in rows
    )
    return f'{checks}<div class="grid">{"".join(figs)}</div><table>{head}{body}</table>'


def _student_checks(pr: Mapping[str, Mapping[str, Any]]) -> str:
    """The students' held-out AUC beside the similarity stage's, with a red flag per warning."""
    rows = []
    for task, d in pr.items():
        if d.get("student_auc") is None and not d.get("warnings"):
            continue
        warns = d.get("warnings") or []
        flag = (
            "".join(f'<div class="flag">&#9873; {escape(w)}</div>' for w in warns)
            if warns
            else '<span class="muted">ok</span>'
        )
        rows.append(
            f"<tr><td class='l'>{escape(task)}</td><td>{_val(d.get('student_auc'))}</td>"
            f"<td>{_val(d.get('similarity_auc'))}</td><td class='l'>{flag}</td></tr>"
        )
    if not rows:
        return ""
    rows_desc = str(next((d["checks_rows"] for d in pr.values() if d.get("checks_rows")), ""))
    head = (
        "<tr><th class='l'>task</th><th>student AUC</th><th>similarity AUC</th>"
        "<th class='l'>checks</th></tr>"
    )
    return (
        f"<p>Shipped students against the similarity stage on the same held-out rows "
        f"({escape(rows_desc)}):</p><table class='checks'>{head}{''.join(rows)}</table>"
    )


def _kept(kept: Mapping[str, Mapping[str, Any]]) -> str:
    out = []
    for task, d in kept.items():
        groups = d.get("groups", {})
        if not groups:
            continue
        by = d.get("by", "group")
        with_share = all(g.get("seen") for g in groups.values())
        items = []
        for name, g in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
            k, s = int(g.get("kept", 0)), g.get("seen")
            if with_share:
                items.append((f"{by} {name}", k / s, f"{k / s:.1%} ({k:,}/{int(s):,})"))
            else:
                items.append((f"{by} {name}", float(k), f"{k:,} kept"))
        svg = bars_svg(
            items[:40],
            title=f"{task}: kept {'share' if with_share else 'documents'} per {by}",
            xlabel="share kept" if with_share else "documents kept",
            x_max=1.0 if with_share else None,
        )
        more = (
            f'<div class="muted">{len(items) - 40} more groups not drawn</div>'
            if len(items) > 40
            else ""
        )
        note = f'<div class="muted">{escape(d["note"])}</div>' if d.get("note") else ""
        out.append(f'<div class="fig">{svg}{more}{note}</div>')
    return f'<div class="grid">{"".join(out)}</div>'


def _dataset(s: Mapping[str, Any]) -> str:
    head = (
        "<tr><th class='l'>pool</th><th>weight</th><th>tokens</th><th>budget</th><th>docs</th>"
        "<th>duplicates</th><th>shortfall</th></tr>"
    )
    rows = []
    figs = []
    for name, p in s.get("pools", {}).items():
        c = p.get("counts", {})
        rows.append(
            f"<tr><td class='l'>{escape(name)}</td><td>{p.get('weight', 0):.3f}</td>"
            f"<td>{p.get('tokens', 0):,}</td>"
            f"<td>{p.get('budget', 0):,}</td><td>{p.get('docs', 0):,}</td>"
            f"<td>{c.get('dropped/duplicate', 0):,}</td>"
            f"<td>{p.get('shortfall', 0):,}</td></tr>"
        )
        clusters = p.get("tokens_per_cluster") or {}
        if clusters:
            tot = sum(clusters.values()) or 1
            items = [
                (f"cluster {k}", v / tot, f"{v:,} tok ({v / tot:.0%})")
                for k, v in sorted(clusters.items(), key=lambda kv: -kv[1])[:30]
            ]
            svg = bars_svg(
                items,
                title=f"{name}: tokens per cluster",
                xlabel="share of the pool tokens",
                x_max=1.0,
            )
            figs.append(f'<div class="fig">{svg}</div>')
    m = s.get("token_counting", {})
    how = ", ".join(f"{k}: {v:,}" for k, v in (m.get("docs_by_method") or {}).items())
    cap = (
        f"<p>{s.get('tokens', 0):,} tokens of a {s.get('budget', 0):,} budget, "
        f"{s.get('docs', 0):,} documents, order {escape(str(s.get('order')))}; tokens counted by "
        f"{escape(how or 'n/a')}"
        + (" (estimate: ceil(bytes / 4))" if m.get("estimate") else "")
        + "</p>"
    )
    if s.get("over") == "domains":  # a mixture over domains: each row is a domain
        cap += (
            "<p>The mixture is over corpus domains: each row holds one domain's documents from "
            f"the pools {escape(', '.join(s.get('sources') or {}))}.</p>"
        )
    return (
        cap + f"<table>{head}{''.join(rows)}</table>" + f'<div class="grid">{"".join(figs)}</div>'
    )


def _mixture(m: Mapping[str, Any]) -> str:
    w = m.get("weights", {})
    items = [(k, float(v), f"{float(v):.3f}") for k, v in w.items()]
    svg = bars_svg(items, title="proposed mixture", xlabel="weight", x_max=1.0)
    fit = m.get("fit", {}).get(m.get("target"), {})
    head = "<tr><th class='l'>model</th><th>held-out Spearman</th><th>MAE</th></tr>"
    rows = "".join(
        f"<tr><td class='l'>{escape(k)}{' (chosen)' if k == m.get('model') else ''}</td>"
        f"<td>{_val(v.get('spearman'))}</td><td>{_val(v.get('mae'))}</td></tr>"
        for k, v in fit.items()
    )
    best = m.get("best_observed", {})
    cap = (
        f"<p>target {escape(str(m.get('target')))} ({escape(str(m.get('goal')))}), "
        f"{m.get('n_runs')} proxy runs; predicted {_val(m.get('predicted'))} vs best run "
        f"{escape(str(best.get('mix_id')))}: {_val(best.get('value'))}</p>"
    )
    return cap + f'<div class="grid"><div class="fig">{svg}</div></div><table>{head}{rows}</table>'


def _arms(s: Mapping[str, Any]) -> str:
    """Per task: a table of every arm's intervals and differences, and bars of BPB / acc_norm."""
    st = s.get("settings", {})
    ref = st.get("reference")
    conf = float(st.get("confidence", 0.95))
    by = {(r["task"], r["arm"], r["metric"]): r for r in s.get("table", [])}
    tasks = list(dict.fromkeys(r["task"] for r in s.get("table", [])))
    arms = list(st.get("arms") or dict.fromkeys(r["arm"] for r in s.get("table", [])))
    metrics = ("acc", "acc_norm", "bpb")

    def iv(r: Mapping[str, Any] | None, m: str, lo: str, hi: str) -> str:
        if r is None or r.get(m) is None or not math.isfinite(r[m]):
            return "-"
        a, b = r.get(lo), r.get(hi)
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            return f"{r[m]:.4f}"
        return f"{r[m]:.4f} [{a:.4f}, {b:.4f}]"

    cost = ", ".join(
        f"{escape(a)} {c.get('cost', {}).get('minutes', 0):.1f} min"
        for a, c in s.get("arms", {}).items()
    )
    out = [
        f"<p>{len(st.get('seeds', []))} proxy seed(s) per arm, {st.get('budget', 0):,}-token "
        f"datasets; mean [{conf:.0%} interval] over seeds, differences to {escape(str(ref))} "
        f"paired by seed (<b>bold</b>: the interval excludes 0). Cost: {cost}.</p>"
    ]
    head = "".join(f"<th>{m}</th>" for m in metrics) + "".join(
        f"<th>&Delta;{m} vs {escape(str(ref))}</th>" for m in metrics
    )
    for t in tasks:
        rows = []
        for a in arms:
            cells = "".join(
                f"<td>{iv(by.get((t, a, m)), 'mean', 'lo', 'hi')}</td>" for m in metrics
            )
            for m in metrics:
                r = by.get((t, a, m))
                txt = iv(r, "diff", "diff_lo", "diff_hi") if r and "diff" in r else "-"
                cells += (
                    f"<td>{'<b>' + txt + '</b>' if r and r.get('better') is not None else txt}</td>"
                )
            tok = s.get("arms", {}).get(a, {}).get("tokens")
            rows.append(f"<tr><td class='l'>{escape(a)}</td><td>{_val(tok)}</td>{cells}</tr>")
        figs = []
        for m, label in (("bpb", "bits per byte (lower is better)"), ("acc_norm", "acc_norm")):
            items = []
            for a in arms:
                r = by.get((t, a, m))
                if r and r.get("mean") is not None and math.isfinite(r["mean"]):
                    items.append((a, float(r["mean"]), iv(r, "mean", "lo", "hi")))
            if items:
                svg = bars_svg(
                    items, title=f"{t}: {m}", xlabel=label, x_max=1.0 if m == "acc_norm" else None
                )
                figs.append(f'<div class="fig">{svg}</div>')
        out.append(
            f"<h3>{escape(t)}</h3><table><tr><th class='l'>arm</th><th>tokens</th>{head}</tr>"
            f'{"".join(rows)}</table><div class="grid">{"".join(figs)}</div>'
        )
    return "\n".join(out)


def _samples(samples: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]) -> str:
    out = []
    for task, kinds in samples.items():
        out.append(f"<h3>{escape(task)}</h3>")
        places = _score_decimals(
            [d.get("scores") or {} for k in SAMPLE_KINDS for d in kinds.get(k) or []]
        )
        for kind in SAMPLE_KINDS:
            docs = kinds.get(kind) or []
            if not docs:
                continue
            out.append(f'<h4 class="kind">{kind} ({len(docs)})</h4>')
            for d in docs:
                text = str(d.get("text", ""))
                sc = ", ".join(
                    f"{k} {_score(v, places.get(k, 3))}" for k, v in (d.get("scores") or {}).items()
                )
                why = f" &middot; {escape(str(d['why']))}" if d.get("why") else ""
                head = escape(text[:SAMPLE_CHARS])
                rest = text[SAMPLE_CHARS:SAMPLE_FULL_CHARS]
                more = (
                    f"<details><summary>more</summary><pre>{escape(rest)}</pre></details>"
                    if rest
                    else ""
                )
                out.append(
                    f'<div class="sample {kind}"><div class="meta">{escape(str(d.get("id", "")))} '
                    f"&middot; {escape(sc)}{why}</div>"
                    f"<pre>{head}</pre>{more}</div>"
                )
    return "\n".join(out)


# -- helpers ---------------------------------------------------------------------------------------
def _score_decimals(
    rows: Sequence[Mapping[str, Any]], least: int = 3, most: int = 6
) -> dict[str, int]:
    """Per score name, the fewest decimals (``least``..``most``) at which samples whose values
    differ also print differently (a kept 0.50012 and a borderline 0.49987 must not both read
    0.500)."""
    values: dict[str, set[float]] = {}
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and math.isfinite(v):
                values.setdefault(k, set()).add(v)
    out = {}
    for k, vs in values.items():
        out[k] = next(
            (d for d in range(least, most + 1) if len({round(v, d) for v in vs}) == len(vs)), most
        )
    return out


def _score(v: Any, places: int) -> str:
    if isinstance(v, float) and math.isfinite(v) and abs(v) < 1000:
        return f"{v:.{places}f}"
    return _val(v)


def _val(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3f}"
    return str(v)


def _sort_key(name: str) -> tuple:
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)
