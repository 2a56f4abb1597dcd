"""LLM rating (FineWeb-Edu style): a 0-5 rubric per task, asked of any OpenAI-compatible
endpoint."""

from retriever.rate.cache import AnswerCache
from retriever.rate.client import ChatClient, EndpointConfig, RequestBudget
from retriever.rate.prompt import FRAME, TaskPrompt, parse_score, task_prompt
from retriever.rate.stage import (
    RATING,
    RateConfig,
    RatingStage,
    load_prompts,
    preview_prompts,
    rate_docs,
    rating_label_rows,
    read_ratings,
    write_rating_labels,
)

__all__ = [
    "FRAME",
    "RATING",
    "AnswerCache",
    "ChatClient",
    "EndpointConfig",
    "RateConfig",
    "RatingStage",
    "RequestBudget",
    "TaskPrompt",
    "load_prompts",
    "preview_prompts",
    "parse_score",
    "rate_docs",
    "rating_label_rows",
    "read_ratings",
    "task_prompt",
    "write_rating_labels",
]
