"""The run report: one self-contained ``report.html`` (inline SVG, no script, opens offline).

API: :func:`render_report` (plain data -> HTML string), :func:`collect_report` (a run folder ->
that data), :func:`write_report` (both, written atomically), :func:`find_sources`.
"""

from retriever.report.collect import ReportSources, collect_report, find_sources, write_report
from retriever.report.render import render_report
from retriever.report.svg import pr_curve

__all__ = [
    "ReportSources",
    "collect_report",
    "find_sources",
    "pr_curve",
    "render_report",
    "write_report",
]
