"""Model prices in USD per million tokens, used to put a cost on every LLM call.

    import tracekit
    tracekit.set_model_prices({"claude-sonnet-4-5": {"input": 3, "output": 15,
                                                     "cache_write": 3.75, "cache_read": 0.30}})
    tracekit.model_cost("claude-sonnet-4-5-20250929", input_tokens=1000, output_tokens=200)

A model matches the longest key that is a prefix of its name, so "claude-sonnet-4-5" also prices
"claude-sonnet-4-5-20250929". Unknown models get no cost (NULL in SQL), never a guess.

The defaults are Anthropic's published list prices (platform.claude.com/docs/en/about-claude/pricing,
checked 2026-11: standard tier, 5-minute cache writes, the lower band of tiered prices such as
Haiku 5.5's up-to-100k-token prompts). Models without a published price here (e.g. Fable 5.2) get
no cost. Prices change: override them with `set_model_prices`, or
point `TRACEKIT_PRICES` at a JSON file of the same shape (read at first use). A cost is computed
when a call is recorded (the `tracekit.cost_usd` span attribute) and, for spans from other
instrumentations, in the `llm_calls` view from this table as it was when the view was built.

Token accounting follows Anthropic: `input_tokens` is the uncached prompt; cache reads and cache
writes are priced separately.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from ._sqltext import sql_literal


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float | None = None  # default: 1.25 x input (5-minute cache)
    cache_read: float | None = None  # default: 0.1 x input

    def rates(self) -> tuple[float, float, float, float]:
        """(input, output, cache write, cache read), the cache defaults filled in."""
        cw = self.cache_write if self.cache_write is not None else self.input * 1.25
        cr = self.cache_read if self.cache_read is not None else self.input * 0.1
        return self.input, self.output, cw, cr

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> float:
        p_in, p_out, cw, cr = self.rates()
        return (input_tokens * p_in + output_tokens * p_out + cache_write * cw + cache_read * cr) / 1e6


DEFAULT_PRICES: dict[str, ModelPrice] = {
    # (input, output, 5-minute cache write, cache read), USD per million tokens
    "claude-fable-5-1": ModelPrice(10.0, 50.0, 12.50, 0.25),
    "claude-mythos-5-1": ModelPrice(10.0, 50.0, 12.50, 0.25),
    "claude-fable-5": ModelPrice(10.0, 50.0, 12.50, 1.00),
    "claude-mythos-5": ModelPrice(10.0, 50.0, 12.50, 1.00),
    "claude-opus-5-5": ModelPrice(4.0, 20.0, 5.00, 0.20),
    "claude-opus-5": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-8": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-7": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-6": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-5": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-1": ModelPrice(15.0, 75.0, 18.75, 1.50),
    "claude-opus-4": ModelPrice(15.0, 75.0, 18.75, 1.50),
    "claude-sonnet-5-5": ModelPrice(2.0, 10.0, 2.50, 0.10),
    "claude-sonnet-5": ModelPrice(2.0, 10.0, 2.50, 0.20),
    "claude-sonnet-4-6": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4-5": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-3-7-sonnet": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-5-5": ModelPrice(0.10, 0.50, 0.125, 0.01),  # prompts up to 100k tokens
    "claude-haiku-4-5": ModelPrice(1.0, 5.0, 1.25, 0.10),
    "claude-3-5-haiku": ModelPrice(0.80, 4.0, 1.00, 0.08),
    "claude-3-haiku": ModelPrice(0.25, 1.25, 0.30, 0.03),
    "claude-3-opus": ModelPrice(15.0, 75.0, 18.75, 1.50),
}

_lock = threading.Lock()
_prices: dict[str, ModelPrice] | None = None


_PRICE_KEYS = ("input", "output", "cache_write", "cache_read")


def _rate(value: Any) -> float | None:
    return float(value) if value is not None else None


def _coerce(model: str, value: Any) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    if isinstance(value, Mapping):
        try:
            unknown = sorted(str(k) for k in value if k not in _PRICE_KEYS)
            if unknown:
                raise TypeError(f"unknown keys {unknown}")
            missing = [k for k in ("input", "output") if value.get(k) is None]
            if missing:
                raise TypeError(f"no {' or '.join(missing)} rate")
            return ModelPrice(float(value["input"]), float(value["output"]),
                              _rate(value.get("cache_write")), _rate(value.get("cache_read")))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"price for {model!r} must look like {{'input': 3.0, 'output': 15.0, 'cache_write': 3.75, "
                f"'cache_read': 0.3}} (USD per million tokens); got {dict(value)!r} ({exc})"
            ) from None
    raise ConfigError(f"price for {model!r} must be a ModelPrice or a dict, got {type(value).__name__}")


def _load() -> dict[str, ModelPrice]:
    global _prices
    with _lock:
        if _prices is None:
            table = dict(DEFAULT_PRICES)
            path = os.environ.get("TRACEKIT_PRICES")
            if path:
                try:
                    raw = json.loads(Path(path).read_text())
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"TRACEKIT_PRICES={path!r} is not a readable JSON file: {exc}") from None
                if not isinstance(raw, dict):
                    raise ConfigError(f"TRACEKIT_PRICES={path!r} must hold a JSON object of model -> prices")
                table.update({str(k): _coerce(str(k), v) for k, v in raw.items()})
            _prices = table
        return _prices


def model_prices() -> dict[str, ModelPrice]:
    """A copy of the price table in force."""
    return dict(_load())


def set_model_prices(prices: Mapping[str, ModelPrice | Mapping[str, float]], *, replace: bool = False) -> None:
    """Add or change prices (USD per million tokens); `replace=True` drops the rest of the table."""
    global _prices
    new = {str(k): _coerce(str(k), v) for k, v in prices.items()}
    table = {} if replace else dict(_load())
    table.update(new)
    with _lock:
        _prices = table
    _refresh_views()


def reset_model_prices() -> None:
    """Back to the defaults plus `TRACEKIT_PRICES` (re-read now)."""
    global _prices
    with _lock:
        _prices = None
    _load()
    _refresh_views()


def price_for(model: str | None) -> ModelPrice | None:
    if not model:
        return None
    table = _load()
    best = None
    for key in table:
        if model.startswith(key) and (best is None or len(key) > len(best)):
            best = key
    return table[best] if best is not None else None


def model_cost(model: str | None, input_tokens: int = 0, output_tokens: int = 0,
               cache_read_tokens: int = 0, cache_write_tokens: int = 0) -> float | None:
    """USD for one call (Anthropic accounting: `input_tokens` excludes the cache); None if unpriced."""
    price = price_for(model)
    if price is None:
        return None
    return price.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)


def prices_sql() -> str:
    """The table as a SQL VALUES list: (prefix, input, output, cache_write, cache_read)."""
    rows = []
    for key, p in sorted(_load().items()):
        rows.append(f"({sql_literal(key)}, " + ", ".join(repr(r) for r in p.rates()) + ")")
    if not rows:
        rows.append("(NULL, 0.0, 0.0, 0.0, 0.0)")
    return "(VALUES " + ", ".join(rows) + ") AS prices(prefix, p_input, p_output, p_cache_write, p_cache_read)"


_listeners: list[Callable[[], None]] = []


def on_change(listener: Callable[[], None]) -> None:
    """Call `listener` whenever the price table changes (the query engine re-prices open views)."""
    _listeners.append(listener)


def _refresh_views() -> None:
    for listener in list(_listeners):
        listener()
