"""The default proxy loop of ``retriever evaluate``: ``retriever.proxy.train_proxy`` and
``retriever.evaluation.evaluate_model`` behind the :class:`~retriever.arms.run.Trainer` /
:class:`~retriever.arms.run.Evaluator` protocols (both imported only when used)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from retriever.arms.run import TrainOutcome
from retriever.errors import ConfigError, MissingDependencyError
from retriever.manifest import file_fingerprint

if TYPE_CHECKING:
    from retriever.proxy import ProxyConfig


def _proxy_module():
    try:
        import retriever.proxy as proxy
    except ModuleNotFoundError as e:  # the proxy stage is a package of its own
        raise MissingDependencyError(
            f"proxy training is not available ({e}); install with `pip install -e '.[proxy]'`"
        ) from e
    return proxy


class ProxyTrainer:
    """``train_proxy`` with one :class:`retriever.proxy.ProxyConfig` per seed.

    Args:
        config: the proxy's settings (``tokens``, ``seq_len``, ``n_layer``, ...); its ``seed`` is
            each run's, its ``device`` (left ``auto``) is ``device``.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        config: ProxyConfig | None = None,
        device: str = "auto",
        progress: bool = False,
    ):
        proxy = _proxy_module()
        self._train = proxy.train_proxy
        base = config if config is not None else proxy.ProxyConfig()
        if base.device == "auto":
            base = dataclasses.replace(base, device=device)
        self.base = dataclasses.replace(base, seed=0)
        # the cache key: every setting that changes the weights, except the seed (keyed apart)
        spec = dataclasses.asdict(self.base)
        spec.pop("seed", None)
        # where it runs is not what it is: cpu / cuda and thread counts share one cache entry
        for k in ("device", "threads"):
            spec.pop(k, None)
        self.progress = progress
        self.spec = {"trainer": "retriever.proxy", **spec}

    def config(self, seed: int) -> ProxyConfig:
        return dataclasses.replace(self.base, seed=int(seed))

    def train(self, data: Path, out: Path, seed: int) -> TrainOutcome:
        r = self._train(str(data), str(out), self.config(seed), progress=self.progress)
        keep = ("steps", "final_loss", "epochs", "n_docs", "device", "dtype")
        info = {k: getattr(r, k) for k in keep if hasattr(r, k)}
        return TrainOutcome(
            Path(r.checkpoint),
            int(r.tokens),
            float(r.tokens_per_s),
            float(r.seconds),
            bool(getattr(r, "resumed", False)),
            info,
        )


class HarnessEvaluator:
    """``evaluate_model`` on the tasks, with local evaluation files where given.

    Args:
        tasks: task names as ``retriever.evaluation`` knows them.
        data: task -> local records (offline); ``None``: the harness's own data.
        limit: records per task.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        tasks: list[str],
        data: dict[str, str] | None = None,
        limit: int | None = None,
        device: str = "auto",
    ):
        if not tasks:
            raise ConfigError("no evaluation task: set [evaluate] tasks or eval_data")
        self.tasks = list(tasks)
        self.data = {t: str(p) for t, p in (data or {}).items() if t in self.tasks} or None
        for t, p in (self.data or {}).items():
            if not Path(p).exists():
                raise ConfigError(f"[evaluate] eval_data for {t!r}: {p} does not exist")
        self.limit = limit
        self.device = device
        self.spec = {
            "evaluator": "retriever.evaluation",
            "tasks": self.tasks,
            "data": {t: [p, _fp(p)] for t, p in (self.data or {}).items()},
            "limit": limit,
        }

    def evaluate(self, checkpoint: Path) -> dict[str, dict[str, float]]:
        try:
            from retriever.evaluation import evaluate_model
        except ModuleNotFoundError as e:
            raise MissingDependencyError(
                f"proxy evaluation is not available ({e}); install with `pip install -e '.[eval]'`"
            ) from e
        return evaluate_model(
            checkpoint, tasks=self.tasks, data=self.data, limit=self.limit, device=self.device
        )


def _fp(path: str) -> str:
    p = Path(path)
    if p.is_file():
        return file_fingerprint(p, full=True)
    from retriever.corpus.sharding import list_shards
    from retriever.manifest import paths_fingerprint

    return paths_fingerprint(list_shards([str(p)]))
