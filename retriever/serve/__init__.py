"""``retriever serve``: the query service (FastAPI + uvicorn) over the embedder, indexes and store.

:class:`QueryService` is the engine (plain Python); :func:`create_app` (in
:mod:`retriever.serve.app`, imports FastAPI) maps HTTP onto it; :func:`run_server` /
:class:`ThreadedServer` run it under uvicorn.
"""

from retriever.serve.service import EmbedBatcher, QueryService, ServeConfig

__all__ = [
    "EmbedBatcher",
    "QueryService",
    "ServeConfig",
    "ThreadedServer",
    "create_app",
    "run_server",
]


def __getattr__(name):  # FastAPI / uvicorn only when serving
    if name == "create_app":
        from retriever.serve.app import create_app

        return create_app
    if name in ("run_server", "ThreadedServer"):
        from retriever.serve import server

        return getattr(server, name)
    raise AttributeError(name)
