"""The `anthropic` proposer: Claude through the official SDK, edits as SEARCH/REPLACE blocks or whole files.

The stable part of the prompt (rules, the human's program, the output format) is the system
prompt, marked for prompt caching; the per-experiment part (task card, current file, history,
trace sections) is the user message. The SDK retries rate limits, overloads and connection errors
with exponential backoff (`max_retries`); tokens (uncached, cached read, cache write, output) and
USD are accounted per call from the response's usage and tracekit's model price table
(`tracekit.set_model_prices`; or per proposer `price_in` / `price_out` / `price_cache_write` /
`price_cache_read`, USD per million tokens). The call is recorded as an `llm` span by tracekit's
Anthropic instrumentation, under the experiment's `optimizer.propose` span.

    tracekit optimize examples/tinylm --proposer anthropic          # ANTHROPIC_API_KEY in the environment
    [proposer]                                                      # tracekit.toml
    model = "claude-sonnet-5-5"
    max_tokens = 32000
"""

from __future__ import annotations

import os
from typing import Any

from .._errors import OptimizerError
from ._proposer import Cost, Proposal, ProposalContext

DEFAULT_MODEL = "claude-sonnet-5-5"


def cost_of(model: str, usage: Any, overrides: dict[str, Any] | None = None) -> Cost:
    """Cost of one call from its usage: `overrides` (price_in, price_out, ...; USD per million tokens)
    or tracekit's model price table (`tracekit.set_model_prices`); USD is None for an unpriced model."""
    from ..store._prices import ModelPrice, price_for

    tin = int(getattr(usage, "input_tokens", 0) or 0)
    tout = int(getattr(usage, "output_tokens", 0) or 0)
    cread = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    cwrite = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    o = overrides or {}
    if o.get("price_in") is not None and o.get("price_out") is not None:
        price: ModelPrice | None = ModelPrice(float(o["price_in"]), float(o["price_out"]),
                                              o.get("price_cache_write"), o.get("price_cache_read"))
    else:
        price = price_for(model)
    usd = None if price is None else price.cost(tin, tout, cread, cwrite)
    return Cost(tin, tout, cread, cwrite, usd)


class AnthropicProposer:
    """One Messages API call per proposal (streamed), prompt prefix cached."""

    name = "anthropic"

    def __init__(self, model: str = DEFAULT_MODEL, max_tokens: int = 32000, api_key: str | None = None,
                 base_url: str | None = None, max_retries: int = 4, timeout_s: float = 600.0,
                 prices: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> None:
        try:
            import anthropic
        except ImportError as exc:
            raise OptimizerError("the anthropic proposer needs the anthropic SDK: pip install 'tracekit-loop[anthropic]'") from exc
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise OptimizerError("the anthropic proposer needs ANTHROPIC_API_KEY in the environment "
                                 "(or use --proposer search, which needs no key)")
        self.model = model
        self.max_tokens = max_tokens
        self.prices = prices or {}
        self.extra = extra or {}
        self.client = anthropic.Anthropic(api_key=key, base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
                                          max_retries=max_retries, timeout=timeout_s)
        from ..llm.anthropic._instrument import instrument_anthropic

        instrument_anthropic(self.client)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "AnthropicProposer":
        prices: dict[str, Any] = {k: options[k] for k in ("price_in", "price_out", "price_cache_write", "price_cache_read")
                                  if k in options}
        known = {"model", "max_tokens", "api_key", "base_url", "max_retries", "timeout_s", "seed", *prices}
        extra = {k: v for k, v in options.items() if k not in known and k not in ("command", "factor", "combine_every")}
        return cls(model=str(options.get("model", DEFAULT_MODEL)), max_tokens=int(options.get("max_tokens", 32000)),
                   api_key=options.get("api_key"), base_url=options.get("base_url"),
                   max_retries=int(options.get("max_retries", 4)), timeout_s=float(options.get("timeout_s", 600.0)),
                   prices=prices, extra=extra)

    def propose(self, ctx: ProposalContext) -> Proposal:
        import anthropic

        system: Any = [{"type": "text", "text": ctx.system, "cache_control": {"type": "ephemeral"}}]
        messages: Any = [{"role": "user", "content": ctx.prompt}]
        try:
            with self.client.messages.stream(model=self.model, max_tokens=self.max_tokens, system=system,
                                             messages=messages, **self.extra) as stream:
                msg = stream.get_final_message()
        except anthropic.APIStatusError as exc:
            raise OptimizerError(f"Claude API error {exc.status_code} (after {self.client.max_retries} retries): "
                                 f"{str(exc)[:300]}") from exc
        except anthropic.APIConnectionError as exc:
            raise OptimizerError(f"cannot reach the Claude API ({exc}); check the network or ANTHROPIC_BASE_URL") from exc
        text = "".join(str(getattr(b, "text", "")) for b in msg.content if b.type == "text")
        cost = cost_of(msg.model or self.model, msg.usage, self.prices)
        # an empty or truncated reply is still returned (with its cost): validation records it as invalid
        return Proposal(text=text, rationale="", cost=cost, raw_output=text, model=msg.model or self.model,
                        meta={"stop_reason": str(msg.stop_reason)})
