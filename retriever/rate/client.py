"""A small client for OpenAI-compatible endpoints (vLLM, llama.cpp server, hosted APIs).

Standard library only (``urllib``), safe to call from many threads. Every HTTP attempt takes one
unit of a shared :class:`RequestBudget` first, so ``max_requests`` bounds what a run can spend,
retries included. Retried: HTTP 408/409/425/429/5xx, timeouts and dropped connections, with
exponential backoff (``backoff * 2**attempt``, capped, with jitter) or the server's
``Retry-After`` when it sends one. Not retried: other 4xx (the request itself is wrong: too long a
prompt is recorded against that document). Fatal for the whole run (:class:`EndpointError`): a
refused key (401/403), an unknown route or model (404), or a server that cannot be reached at all.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from retriever.errors import ConfigError, EndpointError

RETRY_STATUS = frozenset({408, 409, 425, 429})
APIS = ("chat", "completions")


class BudgetExhausted(Exception):
    """No request of the budget is left (not an error: a rerun with a larger budget continues)."""


class RequestBudget:
    """At most ``limit`` HTTP requests (``None``: unlimited), shared by all threads."""

    def __init__(self, limit: int | None = None):
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise ConfigError(f"max_requests must be an integer >= 0, got {limit!r}")
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                raise BudgetExhausted
            self.used += 1

    @property
    def left(self) -> float:
        return float("inf") if self.limit is None else max(0, self.limit - self.used)


@dataclass
class Answer:
    """One answer: the text, the token usage the server reported, attempts it took."""

    text: str
    usage: dict = field(default_factory=dict)
    attempts: int = 1


class RequestFailed(Exception):
    """A request that failed for good (after its retries); ``kind`` names it (``http_500``...)."""

    def __init__(self, kind: str, detail: str, attempts: int):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.attempts = attempts


@dataclass(frozen=True)
class EndpointConfig:
    """Where and how to ask: the endpoint part of the rating stage's config (``[rate.endpoint]``
    of a run config).

    Attributes:
        base_url: API root of the OpenAI-compatible endpoint (ends in /v1).
        model: model name the server knows.
        api: chat (``/chat/completions``) or completions (``/completions``).
        temperature: sampling temperature; part of the prompt version.
        max_tokens: tokens per answer; part of the prompt version.
        seed: sampling seed sent to the server (when set); part of the prompt version.
        timeout: seconds per request.
        retries: retries of a request on 429 / 5xx / timeouts.
        backoff: first retry wait in seconds (doubles with each retry).
        max_backoff: longest retry wait in seconds.
    """

    base_url: str = "http://localhost:8000/v1"
    model: str = ""
    api: str = "chat"
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = None
    timeout: float = 120.0
    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise ConfigError(f"api {self.api!r}: use one of {', '.join(APIS)}")
        if not self.model:
            raise ConfigError(
                "the rating endpoint needs a model name: --model, or model in [rate.endpoint]"
            )
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url {self.base_url!r} must start with http:// or https:// "
                "(e.g. http://localhost:8000/v1)"
            )
        if self.retries < 0 or self.timeout <= 0 or self.max_tokens < 1:
            raise ConfigError("retries must be >= 0, timeout and max_tokens > 0")
        check_backoff(self.backoff, self.max_backoff)


def check_backoff(backoff: float, max_backoff: float) -> None:
    """Raise :class:`ConfigError` unless ``0 <= backoff <= max_backoff`` (NaN fails too)."""
    for name, v in (("backoff", backoff), ("max_backoff", max_backoff)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
            raise ConfigError(f"{name} must be >= 0 seconds, got {v!r}")
    if max_backoff < backoff:
        raise ConfigError(
            f"max_backoff {max_backoff!r} is smaller than backoff {backoff!r}: the cap must be "
            "at least the first wait (raise max_backoff or lower backoff)"
        )


class ChatClient:
    """Sends one prompt, returns one :class:`Answer` (see the module docstring for retries)."""

    def __init__(
        self,
        config: EndpointConfig,
        api_key: str | None = None,
        budget: RequestBudget | None = None,
        seed: int = 0,
    ):
        self.config = config
        self.api_key = api_key
        self.budget = budget or RequestBudget()
        root = config.base_url.rstrip("/")
        self.url = root + ("/chat/completions" if config.api == "chat" else "/completions")
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def payload(self, prompt: str, system: str | None) -> dict:
        c = self.config
        body: dict = {"model": c.model, "temperature": c.temperature, "max_tokens": c.max_tokens}
        if c.seed is not None:
            body["seed"] = c.seed
        if c.api == "chat":
            msgs = [{"role": "system", "content": system}] if system else []
            body["messages"] = msgs + [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = (system + "\n\n" + prompt) if system else prompt
        return body

    def ask(self, prompt: str, system: str | None = None) -> Answer:
        """The answer to ``prompt``.

        Raises:
            BudgetExhausted: the budget ran out before an attempt.
            RequestFailed: the request failed for good (a 4xx, or retries used up).
            EndpointError: the endpoint refuses the key, does not know the route, or is unreachable.
        """
        data = json.dumps(self.payload(prompt, system)).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        c = self.config
        last = ("", "")
        last_detail = ""
        for attempt in range(c.retries + 1):
            if attempt:
                time.sleep(self._wait(attempt, last[1]))
            self.budget.take()
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=c.timeout) as resp:
                    body = json.loads(resp.read())
                return Answer(_answer_text(body, c.api), body.get("usage") or {}, attempt + 1)
            except urllib.error.HTTPError as e:
                detail = _error_detail(e)
                if e.code in (401, 403):
                    raise EndpointError(
                        f"{self.url} refused the key (HTTP {e.code}: {detail}); put a valid key in "
                        "the environment variable named by --api-key-env"
                    ) from e
                if e.code == 404:
                    raise EndpointError(
                        f"{self.url} answered 404 ({detail}): check --base-url (it should end in "
                        f"/v1) and that the server serves model {c.model!r}"
                    ) from e
                if e.code in RETRY_STATUS or e.code >= 500:
                    last = (f"http_{e.code}", e.headers.get("Retry-After") or "")
                    last_detail = detail
                    continue
                raise RequestFailed(f"http_{e.code}", detail, attempt + 1) from e
            except (
                TimeoutError,
                ConnectionError,
                http.client.HTTPException,
                urllib.error.URLError,
            ) as e:
                reason = getattr(e, "reason", e)
                last = ("timeout" if _is_timeout(reason) else "connection", "")
                last_detail = str(reason)
                continue
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise RequestFailed("bad_response", f"{type(e).__name__}: {e}", attempt + 1) from e
        if last[0] == "connection":
            raise EndpointError(
                f"cannot reach {self.url} after {c.retries + 1} attempts ({last_detail}); start "
                "the server or fix --base-url, then rerun (answers so far are cached)"
            )
        raise RequestFailed(last[0], last_detail, c.retries + 1)

    def _wait(self, attempt: int, retry_after: str) -> float:
        c = self.config
        try:
            if retry_after:
                return min(c.max_backoff, max(0.0, float(retry_after)))
        except ValueError:  # an HTTP date: fall back to our own schedule
            pass
        with self._rng_lock:
            jitter = 0.5 + self._rng.random()
        return min(c.max_backoff, c.backoff * 2 ** (attempt - 1) * jitter)


def _answer_text(body: dict, api: str) -> str:
    choice = body["choices"][0]
    if api == "chat":
        text = choice["message"].get("content")
    else:
        text = choice["text"]
    if not isinstance(text, str):
        raise TypeError(f"the answer holds no text: {str(choice)[:200]}")
    return text


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read()[:500].decode("utf-8", "replace")
    except OSError:
        raw = ""
    return raw or str(e.reason)


def _is_timeout(reason: object) -> bool:
    return isinstance(reason, TimeoutError) or "timed out" in str(reason)
