"""Report polish, checked as rendered by headless Chromium: probabilities that tell kept and
borderline samples apart, bar labels (long source names) drawn whole inside their chart."""

import json
import re
import shutil
import subprocess

import pytest

from retriever.report import render_report
from retriever.report.render import _score_decimals

LONG = "source corpus__climblab_clusters_sample_with_a_long_name"  # 55 characters
LONGER = "source hf__OptimalScale_ClimbLab__cluster_17__cluster_17_001_and_more"

PROBE = """
<script>
window.addEventListener('load', () => {
  const out = {text: document.body.innerText, labels: []};
  for (const svg of document.querySelectorAll('svg.bars')) {
    const box = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll('text.bar-label')) {
      const r = t.getBoundingClientRect();
      out.labels.push({text: t.textContent, left: r.left - box.left, right: r.right - box.left,
                       bar: t.nextElementSibling.getBoundingClientRect().left - box.left});
    }
  }
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium(html: str, tmp_path) -> dict:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,900",
            "--virtual-time-budget=3000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"chromium rendered no probe (rc={proc.returncode}): {proc.stderr[-2000:]}"
    import html as html_lib

    return json.loads(html_lib.unescape(m.group(1)))


def test_decimals_grow_until_different_values_print_differently():
    rows = [
        {"prob/fc": 0.50012, "sim/fc": 0.41},
        {"prob/fc": 0.49987, "sim/fc": 0.39},
        {"prob/fc": 0.5001},
    ]
    places = _score_decimals(rows)
    assert places["sim/fc"] == 3
    assert places["prob/fc"] == 5  # 0.5001 vs 0.50012 differ only at the 5th decimal
    assert _score_decimals([{"p": 0.1}, {"p": 0.1}]) == {"p": 3}  # equal values need nothing more


@pytest.mark.slow
def test_report_in_chromium_tells_samples_apart_and_draws_whole_labels(tmp_path):
    html = render_report(
        "polish",
        kept={
            "fc": {
                "by": "source",
                "groups": {
                    "corpus__climblab_clusters_sample_with_a_long_name": {"kept": 30, "seen": 100},
                    "hf__OptimalScale_ClimbLab__cluster_17__cluster_17_001_and_more": {
                        "kept": 5,
                        "seen": 50,
                    },
                    "w": {"kept": 1, "seen": 4},
                },
            }
        },
        samples={
            "fc": {
                "kept": [{"id": "k1", "text": "kept text", "scores": {"prob/fc": 0.50042}}],
                "borderline": [
                    {"id": "b1", "text": "borderline text", "scores": {"prob/fc": 0.49987}}
                ],
            }
        },
    )
    seen = _chromium(html, tmp_path)
    text = seen["text"]
    assert "prob/fc 0.5004" in text and "prob/fc 0.4999" in text
    labels = {x["text"]: x for x in seen["labels"]}
    assert LONG in labels  # drawn whole, not clipped at 28 characters
    assert len(LONGER) > 56 and LONGER not in labels
    short = next(t for t in labels if t.startswith("source hf__"))
    assert "\u2026" in short and short.endswith("and_more") and len(short) == 56
    for x in labels.values():
        assert x["left"] >= 0, x  # inside the chart on the left
        assert x["right"] <= x["bar"] + 1, x  # does not run into its bar
