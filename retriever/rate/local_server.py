"""A minimal OpenAI-compatible server for local Hugging Face causal LMs.

For tests, benchmarks and small offline rating runs where no vLLM or llama.cpp server is at hand:
``POST /v1/chat/completions`` and ``POST /v1/completions`` generate with a local model (greedy at
temperature 0, else sampled with the request's ``seed``), ``GET /v1/models`` lists the models and
``GET /stats`` counts requests (``requests``, per route ``chat`` / ``completions``,
``failed``, ``answered``: what a cache test reads). Fault options make the server refuse
the first ``fail_first`` generation requests with ``fail_status`` (429 or 5xx, with a
``Retry-After`` when given), and ``delay`` adds latency per request, so retries and concurrency
are tested against a real HTTP server.

One generation runs at a time (a lock around the model); ``delay`` is slept outside it, as a
remote server's network and queueing time would be.

Run it::

    python -m retriever.rate.local_server --model tiny=path/to/model_folder --port 8000
    retriever rate --base-url http://127.0.0.1:8000/v1 --model tiny ...

In a test, :class:`RunningServer` serves on a thread of the test's process; a benchmark that
measures the client alone runs the server in a child process (:func:`serve_in_subprocess`).

This module imports FastAPI at import time; import it only when serving.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from retriever._deps import require
from retriever.errors import EndpointError


def format_chat(messages: list[dict], tokenizer=None) -> str:
    """The prompt a chat becomes: the tokenizer's chat template when it has one, else
    ``role: content`` lines followed by ``assistant:``."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{m.get('role', 'user')}: {m.get('content', '')}\n" for m in messages) + (
        "assistant:"
    )


class LocalLM:
    """A causal LM and its tokenizer, generating one answer at a time."""

    def __init__(self, model, tokenizer, context: int | None = None):
        self.torch = require("torch")
        self.model = model.eval()
        self.tokenizer = tokenizer
        cfg = model.config
        self.context = context or int(
            getattr(cfg, "n_positions", None)
            or getattr(cfg, "max_position_embeddings", None)
            or 2048
        )
        self.lock = threading.Lock()

    @classmethod
    def from_folder(cls, path: str) -> LocalLM:
        transformers = require("transformers")
        tok = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModelForCausalLM.from_pretrained(path)
        return cls(model, tok)

    def generate(
        self, prompt: str, max_tokens: int = 64, temperature: float = 0.0, seed: int | None = None
    ) -> dict[str, Any]:
        torch = self.torch
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        max_tokens = max(1, min(int(max_tokens), self.context - 1))
        ids = ids[-(self.context - max_tokens) :]  # keep the end: the question is there
        eos = self.tokenizer.eos_token_id
        x = torch.tensor([ids], dtype=torch.long)
        kw: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": eos}
        if temperature and temperature > 0:
            kw.update(do_sample=True, temperature=float(temperature), top_k=0)
        else:
            kw.update(do_sample=False)
        with self.lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(int(seed))
            out = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kw)
        new = out[0, len(ids) :].tolist()
        finish = "length"
        if eos is not None and eos in new:
            new = new[: new.index(eos)]
            finish = "stop"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return {
            "text": text,
            "prompt_tokens": len(ids),
            "completion_tokens": len(new),
            "finish": finish,
        }


class FixedAnswer:
    """Answers every prompt with ``text``, no model: a server whose own time is ~0, so a
    client's overhead can be measured (``--fixed NAME=TEXT``)."""

    tokenizer = None

    def __init__(self, text: str):
        self.text = text

    def generate(
        self, prompt: str, max_tokens: int = 64, temperature: float = 0.0, seed: int | None = None
    ) -> dict[str, Any]:
        return {
            "text": self.text,
            "prompt_tokens": len(prompt) // 4,
            "completion_tokens": max(1, len(self.text) // 4),
            "finish": "stop",
        }


@dataclass
class Faults:
    """Injected failures: the first ``fail_first`` generation requests get ``fail_status``; and
    an optional key the requests must carry."""

    fail_first: int = 0
    fail_status: int = 500
    retry_after: str | None = None
    delay: float = 0.0
    api_key: str | None = None  # when set, requests without ``Authorization: Bearer <key>`` get 401


def build_app(models: dict[str, LocalLM | FixedAnswer], faults: Faults | None = None) -> FastAPI:
    """The FastAPI app serving ``models`` (request ``model`` picks one; see the module docs)."""
    faults = faults or Faults()
    app = FastAPI(title="retriever local LM server")
    counts: Counter = Counter()
    lock = threading.Lock()
    app.state.counts = counts

    def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "code": status}}, status, headers)

    def _admit(route: str) -> JSONResponse | None:
        with lock:
            counts["requests"] += 1
            counts[route] += 1
            n = counts["requests"]
        if faults.delay:
            time.sleep(faults.delay)
        if n <= faults.fail_first:
            with lock:
                counts["failed"] += 1
            hdr = {"Retry-After": faults.retry_after} if faults.retry_after else None
            return _error(faults.fail_status, f"injected failure {n} of {faults.fail_first}", hdr)
        return None

    async def _body(request: Request) -> dict | JSONResponse:
        if faults.api_key and request.headers.get("authorization") != f"Bearer {faults.api_key}":
            return _error(401, "missing or wrong API key")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        if body.get("model") not in models:
            return _error(404, f"unknown model {body.get('model')!r}; serving {sorted(models)}")
        return body

    def _generate(body: dict, prompt: str) -> dict:
        lm = models[body["model"]]
        g = lm.generate(
            prompt,
            max_tokens=int(body.get("max_tokens") or 64),
            temperature=float(body.get("temperature") or 0.0),
            seed=body.get("seed"),
        )
        with lock:
            counts["answered"] += 1
        return g

    def _usage(g: dict) -> dict:
        return {
            "prompt_tokens": g["prompt_tokens"],
            "completion_tokens": g["completion_tokens"],
            "total_tokens": g["prompt_tokens"] + g["completion_tokens"],
        }

    async def _accept(request: Request, route: str, check) -> dict | JSONResponse:
        """The request's body once it is valid (``check(body)``: what is wrong with it for this
        route, or ``None``) and admitted (counted, delayed, maybe refused); else the error."""
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        wrong = check(body)
        if wrong is not None:
            return _error(400, wrong)
        err = await _run(_admit, route)
        return body if err is None else err

    def _chat_wrong(body: dict) -> str | None:
        msgs = body.get("messages")
        return None if isinstance(msgs, list) and msgs else "messages must be a non-empty list"

    def _prompt_wrong(body: dict) -> str | None:
        return None if isinstance(body.get("prompt"), str) else "prompt must be a string"

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await _accept(request, "chat", _chat_wrong)
        if isinstance(body, JSONResponse):
            return body
        lm = models[body["model"]]
        g = await _run(_generate, body, format_chat(body["messages"], lm.tokenizer))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": g["text"]},
                    "finish_reason": g["finish"],
                }
            ],
            "usage": _usage(g),
        }

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await _accept(request, "completions", _prompt_wrong)
        if isinstance(body, JSONResponse):
            return body
        g = await _run(_generate, body, body["prompt"])
        return {
            "id": f"cmpl-{uuid.uuid4().hex[:12]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "text": g["text"], "finish_reason": g["finish"]}],
            "usage": _usage(g),
        }

    @app.get("/v1/models")
    def list_models():
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in models]}

    @app.get("/stats")
    def stats():
        with lock:
            return dict(counts)

    return app


async def _run(fn, *args):
    """Run blocking work (sleep, generation) in a worker thread, as a sync endpoint would."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


class RunningServer:
    """A uvicorn server on a thread of this process; ``url`` is its ``/v1`` root."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        uvicorn = require("uvicorn")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.app = app
        # log_config=None: uvicorn's default dictConfig would close every logging handler of this
        # process (see retriever.serve.server._server)
        cfg = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", log_config=None
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 30.0) -> RunningServer:
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if time.monotonic() - t0 > timeout or not self.thread.is_alive():
                raise RuntimeError("the local LM server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def serve_in_subprocess(*args: str) -> Iterator[str]:
    """``python -m retriever.rate.local_server ARGS --port 0`` in a child process for as long as
    the block runs (scripts measuring a client against a server in another process); yields the
    server's ``/v1`` url once it serves, and kills the child on the way out.

    The child imports the same checkout of ``retriever`` (``PYTHONPATH`` set to it).

    Raises:
        EndpointError: the server exited before serving (its first line of output is named).
    """
    cmd = [sys.executable, "-m", "retriever.rate.local_server", *args, "--port", "0"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""  # "serving [...] at http://.../v1"
        if " at " not in line:
            raise EndpointError(
                f"the local LM server did not start (it printed {line!r}); run "
                f"{' '.join(cmd[1:])} to see why"
            )
        yield line.rsplit(" at ", 1)[1].strip()
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m retriever.rate.local_server",
        description="Serve local causal LMs over an OpenAI-compatible API (tests, offline runs).",
    )
    p.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER", help="repeatable")
    p.add_argument(
        "--fixed",
        action="append",
        default=[],
        metavar="NAME=TEXT",
        help="a 'model' answering TEXT to everything (measures a client's own cost)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    p.add_argument("--fail-first", type=int, default=0, help="refuse the first N requests")
    p.add_argument("--fail-status", type=int, default=500, help="status of a refusal")
    p.add_argument("--retry-after", default=None, help="Retry-After header of a refusal")
    p.add_argument("--delay", type=float, default=0.0, help="seconds of latency per request")
    p.add_argument("--api-key", default=None, help="require this bearer key")
    args = p.parse_args(argv)
    models: dict[str, LocalLM | FixedAnswer] = {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            p.error(f"--model expects NAME=FOLDER, got {spec!r}")
        models[name] = LocalLM.from_folder(path)
    for spec in args.fixed:
        name, sep, text = spec.partition("=")
        if not sep or not name:
            p.error(f"--fixed expects NAME=TEXT, got {spec!r}")
        models[name] = FixedAnswer(text)
    if not models:
        p.error("give at least one --model NAME=FOLDER or --fixed NAME=TEXT")
    faults = Faults(args.fail_first, args.fail_status, args.retry_after, args.delay, args.api_key)
    srv = RunningServer(build_app(models, faults), args.host, args.port).start()
    print(f"serving {sorted(models)} at {srv.url}", flush=True)
    try:
        srv.thread.join()
    except KeyboardInterrupt:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
