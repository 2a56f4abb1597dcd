#!/usr/bin/env bash
# The main job on a fresh machine: install into ./.venv (scripts/setup.sh), then run every stage on
# the sample data in ../shared/data (configs/offline.toml): gold indexes, similarity scoring,
# perplexity-correlation confirmation with a tiny LM panel trained here, fastText distillation,
# filtering, a training set of up to 1M tokens (250k per task) and the report. Output: runs/offline/ (dataset/, report.html).
# Rerun to resume; only changed steps run again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/retriever run configs/offline.toml "$@"
