"""Being polite to Kaggle: a request rate, retries with exponential backoff and jitter on 429 and 5xx
that honour ``Retry-After``, and a bound on concurrent downloads.

The ``kaggle`` client does not retry these RPCs itself (its ``with_retry`` wraps only some CLI calls),
so every call nbatlas makes goes through :meth:`Politeness.call`.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

import requests
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class KaggleSettings(BaseSettings):
    """How hard nbatlas may pull on Kaggle. Environment variables ``NBATLAS_KAGGLE_*``."""

    model_config = SettingsConfigDict(env_prefix="NBATLAS_KAGGLE_", env_file=None, extra="ignore")

    requests_per_second: float = Field(default=2.0, gt=0, description="Average request rate towards Kaggle.")
    concurrency: int = Field(default=2, ge=1, le=16, description="Downloads in flight at once.")
    max_attempts: int = Field(default=8, ge=1, description="Tries per call before it counts as failed.")
    backoff_initial: float = Field(default=1.0, ge=0, description="First backoff (s); doubles per retry.")
    backoff_max: float = Field(default=120.0, ge=0, description="Longest backoff (s) between two tries.")
    backoff_jitter: float = Field(default=1.0, ge=0, description="Random seconds (0..jitter) added to each backoff.")
    retry_after_max: float = Field(default=900.0, ge=0, description="Longest Retry-After (s) honoured before giving up the call.")
    page_size: int = Field(default=100, ge=1, le=100, description="Kernels asked for per listing page.")


class RateLimiter:
    """At most ``rate`` calls per second on average, shared by all threads (calls are spaced evenly)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            time.sleep(at - now)


def status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, requests.HTTPError):
        return status_of(exc) in RETRY_STATUSES
    # the connection dropped or timed out: try again, like a 5xx
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError))


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's ``Retry-After`` (seconds or an HTTP date), if it sent one."""
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class RetryAfterTooLong(RuntimeError):
    """Kaggle asked us to wait longer than ``retry_after_max``: the call counts as failed."""


class Politeness:
    """Wraps every Kaggle call: rate limit, then retry transient failures. Thread-safe."""

    def __init__(self, settings: KaggleSettings | None = None, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings or KaggleSettings()
        self.limiter = RateLimiter(self.settings.requests_per_second)
        self.downloads = threading.BoundedSemaphore(self.settings.concurrency)
        self._sleep = sleep
        self._lock = threading.Lock()
        self.retries = 0
        # backoff_initial * 2^(n-1), at most backoff_max, plus 0..jitter seconds
        self._backoff = wait_exponential(multiplier=self.settings.backoff_initial, max=self.settings.backoff_max) + wait_random(
            0, self.settings.backoff_jitter
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = retry_after_seconds(exc) if exc is not None else None
        if after is not None:
            if after > self.settings.retry_after_max:
                raise RetryAfterTooLong(f"Kaggle asked to retry after {after:.0f}s (more than retry_after_max)") from exc
            # never sooner than the server asked; a little jitter so parallel workers do not return in lockstep
            return after + random.uniform(0, min(self.settings.backoff_jitter, 1.0))
        return self._backoff(state)

    def _before_sleep(self, state: RetryCallState) -> None:
        with self._lock:
            self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.info("Kaggle call failed (%s), retry %d in %.1fs", exc, state.attempt_number, state.next_action.sleep if state.next_action else 0)

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` at the polite rate, retried on 429 / 5xx / dropped connections."""
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            wait=self._wait,
            stop=stop_after_attempt(self.settings.max_attempts),
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                self.limiter.wait()
                return fn(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover
