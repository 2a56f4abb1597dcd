"""Gold exemplars per task: jsonl / json / parquet files and folders, Hub datasets, TinyAgent,
ELMB."""

from retriever.gold.formats import (
    elmb_choices,
    elmb_prompt,
    elmb_text,
    format_record,
    tinyagent_text,
)
from retriever.gold.loader import GoldLoader, GoldSet, load_gold, text_key

__all__ = [
    "GoldLoader",
    "GoldSet",
    "elmb_choices",
    "elmb_prompt",
    "elmb_text",
    "format_record",
    "load_gold",
    "text_key",
    "tinyagent_text",
]
