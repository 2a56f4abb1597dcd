"""Running the query service under uvicorn: in the foreground (the CLI) or in a thread (tests)."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from typing import Any

from retriever._deps import require
from retriever.errors import ConfigError
from retriever.serve.service import QueryService, ServeConfig, default_threads

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), so the real port is known."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto is
    # TCP, and a proto-0 socket kept it on, so every response waited ~40 ms for the client's
    # delayed ACK between its header and body writes. Set here too (accepted sockets inherit it).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror}); pick another --port"
        ) from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _server(app, log_level: str = "warning"):
    uvicorn = require("uvicorn")

    base: Any = uvicorn.Server  # a run-time base class

    class Server(base):
        """uvicorn's server, except that Ctrl-C / SIGTERM end it with status 0 after a graceful
        shutdown (uvicorn re-raises the signal, so the process would die of it)."""

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h)

    # log_config=None: uvicorn's default (a logging.config.dictConfig) closes every handler this
    # process ever made, ones bound to a stream it does not own too (absl's, which OpenVINO imports,
    # closes the sys.stderr it was given: pytest's capture, so the test run dies); its records go
    # through the root logger instead (retriever.logs: on the terminal with -v or from ERROR up)
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="off", log_config=None
    )
    return Server(config)


def run_server(config: ServeConfig, embedder=None) -> int:
    """Load everything, then serve until interrupted (Ctrl-C / SIGTERM); returns 0."""
    from retriever.serve.app import create_app

    threads = config.threads or default_threads()
    if threads:  # before the embedder is built: OpenVINO takes torch's thread count
        require("torch").set_num_threads(int(threads))
        # FAISS has its own OpenMP pool (every core by default): searches of concurrent
        # requests then take cores from the forwards
        require("faiss").omp_set_num_threads(int(threads))
    service = QueryService(config, embedder)
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    # one line a script can wait for (the bench reads the port from it)
    print(
        f"retriever serve: listening on http://{host}:{port} "
        f"(tasks {sorted(service.indexes)}, store rows {service.store_rows})",
        file=sys.stderr,
        flush=True,
    )
    try:
        _server(create_app(service)).run(sockets=[sock])
    finally:
        service.close()
        sock.close()
    return 0


class ThreadedServer:
    """A real uvicorn server on localhost in a background thread (tests, notebooks).

    ``with ThreadedServer(service) as url: ...`` serves ``service`` at ``url`` until the block ends.
    """

    def __init__(self, service: QueryService, host: str = "127.0.0.1"):
        from retriever.serve.app import create_app

        self.service = service
        self.sock = bind(host, 0)
        self.url = "http://{}:{}".format(*self.sock.getsockname()[:2])
        self.server = _server(create_app(service))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the uvicorn server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
