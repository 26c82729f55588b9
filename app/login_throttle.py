"""A budget of dashboard password checks per web process, so guessing cannot burn its CPU.

Why: a dashboard password is stored as PBKDF2 (600,000 rounds, about 0.4-1 s of CPU); every
Basic-auth request with a wrong password pays that again. Without a budget, a handful of
clients guessing passwords keeps every web worker's CPU busy and guesses as fast as the CPU
allows. A login this process has verified before is remembered (`app.credentials`) and never
touches the budget, so people already signed in keep working during a guessing attack; only new
(unverified) credentials are checked against it. Over budget, the request is refused with 429
and `Retry-After` before any hashing. The budget is per app (each `create_app` has its own) and
per process: N web workers allow N times `LOGIN_ATTEMPTS_PER_MINUTE`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from threading import Lock


class TooManyLoginAttempts(Exception):
    """The process's budget of password checks is spent; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many login attempts; retry in {retry_after} s")
        self.retry_after = retry_after


class LoginThrottle:
    """A token bucket of `per_minute` password checks that refills continuously (0: no limit)."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._tokens = float(per_minute)
        self._at = clock()
        self._lock = Lock()

    def take(self) -> None:
        """Spend one check, or raise TooManyLoginAttempts saying when the next one is free."""
        if self.per_minute <= 0:
            return
        rate = self.per_minute / 60.0
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.per_minute), self._tokens + (now - self._at) * rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            wait = (1.0 - self._tokens) / rate
        raise TooManyLoginAttempts(max(1, math.ceil(wait)))
