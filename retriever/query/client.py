"""A client of ``retriever serve``: the same hits as :mod:`retriever.query.search`, from a server
that has the model loaded already (milliseconds a query instead of seconds of model load).

Plain ``urllib`` (no dependency). Hits are in the shapes the local functions return, so
``retriever query --server URL`` prints them the same way.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from retriever.errors import ConfigError, InputError


def _post(url: str, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    req = urllib.request.Request(
        url.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error") or e.reason
        except ValueError:
            msg = e.reason
        raise InputError(f"the server at {url} answered {e.code}: {msg}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConfigError(
            f"cannot reach a query server at {url} ({reason}); start one with "
            "`retriever serve --index ... --corpus-store ...` or check --server"
        ) from None


def server_corpus(
    url: str, texts: list[str], k: int = 10, timeout: float = 60.0
) -> list[list[dict[str, Any]]]:
    """Per text, the ``k`` nearest corpus documents from the server's store (``POST /corpus``)."""
    return _post(url, "/corpus", {"texts": list(texts), "k": k}, timeout)["results"]


def server_gold(
    url: str,
    texts: list[str],
    k: int = 10,
    tasks: list[str] | None = None,
    timeout: float = 60.0,
) -> list[list[dict[str, Any]]]:
    """Per text, the ``k`` best gold exemplars over the server's tasks (``tasks``: all when None),
    each hit with its ``task``, best first: what :func:`~retriever.query.query_gold_many` gives
    (one task: no ``task`` key, as :func:`~retriever.query.query_gold`)."""
    body: dict[str, Any] = {"texts": list(texts), "k": k}
    if tasks:
        body["tasks"] = list(tasks)
    results = _post(url, "/gold", body, timeout)["results"]
    out = []
    for per_task in results:
        many = len(per_task) > 1
        hits = [{**h, "task": t} if many else h for t, hs in per_task.items() for h in hs]
        hits.sort(key=lambda h: -h["score"])
        out.append([{**h, "rank": r + 1} for r, h in enumerate(hits[:k])])
    return out
