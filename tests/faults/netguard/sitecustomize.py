"""Loaded first by a test subprocess (on PYTHONPATH): refuses and records every network attempt.

Each TCP/UDP connection and each name look-up is written to ``$NET_GUARD_LOG`` with the stack that
made it, then fails with OSError, as on a machine without network. Unix sockets stay allowed.
"""

import os
import socket
import traceback

_LOG = os.environ["NET_GUARD_LOG"]


def _deny(what, target):
    with open(_LOG, "a") as fh:
        fh.write(f"{what} {target!r}\n{''.join(traceback.format_stack(limit=25))}----\n")
    raise OSError(f"network blocked by the test guard: {what} {target!r}")


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def connect(self, address):
    if self.family == getattr(socket, "AF_UNIX", None):
        return _connect(self, address)
    return _deny("connect", address)


def connect_ex(self, address):
    if self.family == getattr(socket, "AF_UNIX", None):
        return _connect_ex(self, address)
    return _deny("connect_ex", address)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.getaddrinfo = lambda host, *a, **k: _deny("getaddrinfo", host)
socket.gethostbyname = lambda host, *a, **k: _deny("gethostbyname", host)
socket.gethostbyname_ex = lambda host, *a, **k: _deny("gethostbyname_ex", host)
socket.create_connection = lambda address, *a, **k: _deny("create_connection", address)
