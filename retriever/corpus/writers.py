"""Kept for imports of earlier versions: the atomic writers live in :mod:`retriever.io`."""

from retriever.io import *  # noqa: F403
