"""Reference lines for tinylm: byte n-gram models scored on exactly the predictions val_bpb scores.

    python ngram.py                   # orders 1-5, interpolated absolute discounting (D = 0.75)
    python ngram.py --orders 3 4 5 --discount 0.75

An order-n model predicts each byte from the n-1 bytes before it. Counts come from the training
bytes only; each validation byte after the first (65,535 predictions, as in prepare.evaluate_bpb)
is scored with its context taken from the running byte stream, so the first few bytes of the
validation slice see the end of the training text (the network restarts its context at every
window, so it sees less context there). Smoothing is interpolated absolute discounting down to the
uniform distribution over 256 bytes, untuned:

    p_k(w | h) = max(c(h w) - D, 0) / c(h) + D * N1+(h .) / c(h) * p_{k-1}(w | h')   (h' drops h's first byte)

and p_k = p_{k-1} when the context h never occurred in training. Pure Python; orders 1-5 take a few seconds.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter

from prepare import TRAIN_BYTES, VAL_PREDICTIONS, VOCAB_SIZE, load_corpus


class NGramModel:
    """Interpolated absolute-discounting byte model of a given order, trained on `text`."""

    def __init__(self, text: bytes, order: int, discount: float = 0.75) -> None:
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount must be in (0, 1), got {discount}")
        self.order = order
        self.discount = discount
        # For each context length k = 0 .. order-1: counts of (context + next byte), and per context
        # the total count and the number of distinct next bytes.
        self.counts: list[Counter[bytes]] = []
        self.context_total: list[dict[bytes, int]] = []
        self.context_types: list[dict[bytes, int]] = []
        for k in range(order):
            grams = Counter(text[i - k : i + 1] for i in range(k, len(text)))
            total: dict[bytes, int] = {}
            types: dict[bytes, int] = {}
            for gram, c in grams.items():
                h = gram[:-1]
                total[h] = total.get(h, 0) + c
                types[h] = types.get(h, 0) + 1
            self.counts.append(grams)
            self.context_total.append(total)
            self.context_types.append(types)

    def prob(self, history: bytes, byte: int) -> float:
        """p(byte | the last order-1 bytes of history)."""
        p = 1.0 / VOCAB_SIZE
        d = self.discount
        nxt = bytes([byte])
        for k in range(self.order):
            if k > len(history):
                break
            h = history[len(history) - k :] if k else b""
            c_h = self.context_total[k].get(h)
            if not c_h:
                continue
            c_hw = self.counts[k].get(h + nxt, 0)
            p = max(c_hw - d, 0.0) / c_h + d * self.context_types[k][h] / c_h * p
        return p

    def bits_per_byte(self, stream: bytes, start: int) -> float:
        """Mean -log2 p over the bytes stream[start:], each predicted from the bytes before it."""
        total = 0.0
        ctx = self.order - 1
        for i in range(start, len(stream)):
            total -= math.log2(self.prob(stream[max(0, i - ctx) : i], stream[i]))
        return total / (len(stream) - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Byte n-gram reference lines on tinylm's split.")
    parser.add_argument("--orders", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--discount", type=float, default=0.75)
    args = parser.parse_args(argv)
    corpus = load_corpus()
    train = corpus[:TRAIN_BYTES]
    start = TRAIN_BYTES + 1  # the first validation byte is context only, as in evaluate_bpb
    assert len(corpus) - start == VAL_PREDICTIONS
    print(f"{'order':>5}  {'val bpb':>8}  {'seconds':>7}")
    for order in args.orders:
        t0 = time.perf_counter()
        bpb = NGramModel(train, order, args.discount).bits_per_byte(corpus, start)
        print(f"{order:>5}  {bpb:>8.4f}  {time.perf_counter() - t0:>7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
