"""The ``student:<variant>`` arms: the run's pipeline with the student trained on another label
source (:data:`retriever.distill.trainset.VARIANTS`: ``gold-only``, ``gold+confirmed``, ...).

From a finished run folder: train the run's kind of student (one multi-label model under
``[distill] multilabel = true``, else one per task) with the run's ``[distill]`` settings but
``training_set = <variant>``, from the run's labels (``RUN/confirm/labels``, plus
``RUN/rate/labels`` under ``[rate]``) and gold indexes (``RUN/indexes``); filter the run's corpus
with the run's ``[filter]`` settings and those models; the arm's dataset is then built from these
pools exactly as the ``pipeline`` arm is built from the run's.

Layout (beside the other arms' work, ``OUT/datasets/_pools/<folder>/``)::

    filters/<task>/filter.bin   the students (or filters/multilabel/filter.bin), manifests beside
    pools/                      the filter stage's output with those students
    student.json                the settings they were built with (written when finished)

A rerun with the same settings reuses the folder; other settings (another ``[distill]`` option,
labels, gold, corpus or ``[filter]`` setting) rebuild it, and the arm's dataset with it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from retriever.errors import ConfigError, InputError
from retriever.io import read_json, write_json_atomic
from retriever.manifest import file_fingerprint, fingerprint

log = logging.getLogger(__name__)

STUDENT_PREFIX = "student:"


def is_student_arm(arm: str) -> bool:
    return arm.startswith(STUDENT_PREFIX)


def student_variant(arm: str) -> str:
    """The variant of a ``student:<variant>`` arm.

    Raises:
        ConfigError: the variant is not one of the training-set variants (one line, listing them).
    """
    from retriever.distill.trainset import VARIANTS

    v = arm[len(STUDENT_PREFIX) :]
    if v not in VARIANTS:
        raise ConfigError(
            f"unknown student variant {v!r} in arm {arm!r}: use "
            + ", ".join(STUDENT_PREFIX + x for x in VARIANTS)
        )
    return v


def arm_folder(arm: str) -> str:
    """The folder name of an arm (``student:gold+hard`` -> ``student-gold+hard``: no ``:`` in
    file names)."""
    return arm.replace(":", "-") if is_student_arm(arm) else arm


@dataclass(frozen=True)
class StudentSources:
    """What the student arms are made from: a run's distill and filter settings and inputs.

    Attributes:
        tasks: the run's tasks.
        distill: the run's ``[distill]`` (:class:`~retriever.distill.DistillConfig`).
        multilabel: one multi-label student for every task (``[distill] multilabel``).
        labels: the label folders the run's students read (confirm, and rate's).
        indexes: task -> the run's gold index folder.
        filter: the run's filter config (:class:`~retriever.batch_filter.FilterConfig`).
        corpus: the corpus the run filters.
        executor, workers: where the filter runs (the run's ``[filter]``).
    """

    tasks: tuple[str, ...]
    distill: Any
    multilabel: bool
    labels: tuple[str, ...]
    indexes: dict[str, str]
    filter: Any
    corpus: tuple[str, ...]
    executor: str = "local"
    workers: int | None = None

    @classmethod
    def from_run(cls, cfg) -> StudentSources:
        """The student sources of a :class:`retriever.run.config.RunConfig`'s run folder."""
        from retriever.run.job import RunJob

        job = RunJob(cfg)
        return cls(
            tasks=tuple(cfg.task_names),
            distill=cfg.distill.config(),
            multilabel=bool(cfg.distill.multilabel),
            labels=tuple(str(p) for p in job.label_dirs()),
            indexes={t: str(job.index_dir(t)) for t in cfg.task_names},
            filter=job.filter_config(),
            corpus=tuple(cfg.corpus.paths),
            executor=cfg.filter.executor,
            workers=cfg.filter.workers,
        )

    def config(self, variant: str):
        """The run's distill config with ``training_set = variant``."""
        return dataclasses.replace(self.distill, training_set=variant)


def student_pools(
    arm: str,
    src: StudentSources | None,
    work: Path,
    dataset_dir: Path,
    progress: bool | None = False,
) -> Path:
    """Train the arm's students, filter the run's corpus with them; return the pools folder.

    ``dataset_dir`` (the arm's dataset) is removed when the students are rebuilt, so that it is
    rebuilt from the new pools.

    Raises:
        ConfigError: no run sources, or an unknown variant.
        InputError: the run folder lacks its labels or gold indexes.
    """
    variant = student_variant(arm)
    if src is None:
        raise ConfigError(
            f"the {arm} arm trains from a run folder: run `retriever evaluate CONFIG.toml` on a "
            "finished run"
        )
    cfg = src.config(variant)
    settings = _settings(src, variant, cfg)
    done = work / "student.json"
    pools = work / "pools"
    if done.exists() and read_json(done).get("settings") == settings:
        return pools
    if work.exists():
        log.info("%s: settings changed; retraining its students in %s", arm, work)
        shutil.rmtree(work)
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    models = _train(src, cfg, work / "filters")
    _filter(src, models, work, progress)
    write_json_atomic(done, {"settings": settings, "models": models})
    return pools


def _settings(src: StudentSources, variant: str, cfg) -> dict:
    """What the students and pools depend on (JSON-normalized, to compare with the stored)."""
    from retriever.run.config import step_settings
    from retriever.run.job import inputs_fingerprint

    missing = [d for d in src.labels[:1] if not Path(d).is_dir()]
    if missing:
        raise InputError(
            f"the student arms need the run's confirm labels ({missing[0]}): run `retriever run "
            "CONFIG.toml` first"
        )
    for t, d in src.indexes.items():
        if not (Path(d) / "gold.parquet").is_file():
            raise InputError(
                f"the student arms need the run's gold index of task {t!r} ({d}): run "
                "`retriever run CONFIG.toml` first"
            )
    labels = [
        [str(f), file_fingerprint(f)]
        for d in src.labels
        if Path(d).is_dir()
        for f in sorted(Path(d).glob("*.parquet"))
    ]
    gold = {
        t: [file_fingerprint(Path(d) / n) for n in ("gold.parquet", "manifest.json")]
        for t, d in sorted(src.indexes.items())
    }
    settings = {
        "variant": variant,
        "distill": dataclasses.asdict(cfg),
        "multilabel": src.multilabel,
        "tasks": list(src.tasks),
        "labels": fingerprint(labels),
        "gold": fingerprint(gold),
        "filter": step_settings(src.filter, ("models", "indexes")),
        "reader": dataclasses.asdict(src.filter.reader),
        "corpus": inputs_fingerprint(list(src.corpus)),
    }
    return orjson.loads(orjson.dumps(settings, default=str))


def _train(src: StudentSources, cfg, out: Path) -> dict[str, str]:
    """Train the students into ``out``; return task -> model path."""
    labels = [d for d in src.labels if Path(d).is_dir()]
    indexes: dict[str, str | os.PathLike] = dict(src.indexes)
    if src.multilabel:
        from retriever.distill.multilabel import MultiLabelDistiller

        path = out / "multilabel" / "filter.bin"
        MultiLabelDistiller(cfg).run(labels, list(src.tasks), path, indexes=indexes)
        return {t: str(path) for t in src.tasks}
    from retriever.distill import FastTextDistiller

    models = {}
    for t in src.tasks:
        path = out / t / "filter.bin"
        FastTextDistiller(cfg).run(labels, t, path, indexes=indexes)
        models[t] = str(path)
    return models


def _filter(src: StudentSources, models: dict[str, str], work: Path, progress) -> None:
    from retriever.batch_filter import BatchFilter

    fc = dataclasses.replace(src.filter, models=models, indexes=str(work / "filters"))
    rep = BatchFilter(fc).run(
        list(src.corpus),
        work / "pools",
        executor=src.executor,
        workers=src.workers,
        progress=bool(progress),
    )
    if rep.run.failed:
        raise InputError(
            f"{len(rep.run.failed)} shard(s) failed in the filter; see {work}/pools/logs and rerun"
        )
