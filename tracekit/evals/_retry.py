"""Which errors are worth retrying: transient ones (rate limits, overload, dropped connections).

A wrong answer is never an error, so it is never retried. A solver or scorer raising anything not
transient crashes its case at once (recorded with its error). Raise `TransientError` (or list your
own exception types in `Task(retry_on=...)`) to mark more failures as transient.
"""

from __future__ import annotations

import random

_TRANSIENT_NAMES = {
    # anthropic SDK
    "APIConnectionError", "APITimeoutError", "RateLimitError", "InternalServerError", "OverloadedError",
    "ServiceUnavailableError", "GatewayTimeoutError", "DeadlineExceededError", "RetryableError",
    # httpx / httpcore / requests
    "TransportError", "TimeoutException", "NetworkError", "ConnectError", "ReadTimeout", "RemoteProtocolError",
}
_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


class CaseTimeout(Exception):
    """The case ran past its time limit (scored as status timeout; never retried)."""


class TransientError(Exception):
    """Raise from a solver or scorer for a failure that may go away on retry."""


def is_transient(exc: BaseException, extra: tuple[type[BaseException], ...] = ()) -> bool:
    """True for errors a retry may cure: ours, the task's `retry_on`, connection errors, API 408/429/5xx."""
    if isinstance(exc, TransientError) or (extra and isinstance(exc, extra)):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    for cls in type(exc).__mro__:
        mod = cls.__module__.split(".", 1)[0]
        if mod in ("anthropic", "httpx", "httpcore", "openai", "requests") and cls.__name__ in _TRANSIENT_NAMES:
            return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and type(exc).__module__.split(".", 1)[0] in ("anthropic", "openai", "httpx"):
        return status in _TRANSIENT_STATUS
    return False


def backoff_delay(attempt: int, base_s: float, cap_s: float = 30.0) -> float:
    """Exponential backoff with jitter: between half and all of min(cap, base * 2**(attempt-1))."""
    if base_s <= 0:
        return 0.0
    top = min(cap_s, base_s * 2.0 ** (attempt - 1))
    return top / 2 + random.uniform(0, top / 2)
