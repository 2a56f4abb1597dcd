"""Starting an in-process uvicorn server leaves the process's logging handlers alone.

uvicorn's default log config is a ``logging.config.dictConfig``, which closes every handler the
process ever made; absl's (imported by OpenVINO with the embedder) then closes the ``sys.stderr``
it was made with, which under pytest is the capture's stream, and the whole run dies.
"""

from __future__ import annotations

import io
import logging

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


class _ClosesItsStream(logging.StreamHandler):
    """Like absl's handler: closing it closes the stream it holds."""

    def close(self):
        self.stream.close()
        super().close()


@pytest.fixture
def handler():
    h = _ClosesItsStream(io.StringIO())  # made, never attached: logging still tracks it
    yield h
    h.close()


def test_the_local_lm_server_does_not_close_other_handlers(handler):
    from retriever.rate.local_server import Faults, RunningServer, build_app

    with RunningServer(build_app({}, Faults())) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
    assert not handler.stream.closed


def test_the_query_server_does_not_close_other_handlers(handler):
    from fastapi import FastAPI

    from retriever.serve.server import _server

    _server(FastAPI())
    assert not handler.stream.closed
