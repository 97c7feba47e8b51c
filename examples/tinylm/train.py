"""tinylm's EDITABLE part: a small byte-level GPT trained for a fixed wall-clock budget on 2 CPU cores.

    python train.py                      # 40 s of training (TRACEKIT_TRAIN_SECONDS), then val_bpb
    TINYLM_STEPS=200 python train.py     # exactly 200 steps, fixed seed: a bit-identical val_bpb

This is the file the optimizer (or you) edits; prepare.py (data, budget, metric) is fixed. The loss
curve goes to tracekit (`metrics` view, name "train_loss"), the run ends with `key: value` summary
lines, and val_bpb is written as JSON to $TRACEKIT_RESULT when that is set.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import tracekit
from prepare import VOCAB_SIZE, evaluate_bpb, fixed_steps, load_train, time_budget_seconds

# --- tunable ---
N_LAYER = 2  # transformer blocks
N_EMBD = 64  # model width
N_HEAD = 4  # attention heads (must divide N_EMBD)
BLOCK_SIZE = 64  # context length in bytes (training and evaluation)
BATCH_SIZE = 32  # sequences per optimizer step
LEARNING_RATE = 1e-3  # peak AdamW learning rate
MIN_LR_FRAC = 0.1  # final learning rate as a fraction of the peak
WARMUP_FRAC = 0.02  # fraction of the budget spent warming up linearly
SCHEDULE = "cosine"  # decay after warmup: "cosine", "linear" or "constant"
WEIGHT_DECAY = 0.1  # AdamW decay on matrices and embeddings (not on biases / LayerNorms)
BETA1 = 0.9
BETA2 = 0.99
GRAD_CLIP = 1.0  # max gradient norm (0 turns clipping off)
ACTIVATION = "gelu"  # MLP nonlinearity: "gelu", "relu" or "silu"
MLP_RATIO = 4  # MLP hidden width as a multiple of N_EMBD
# --- end tunable ---

SEED = 1337
THREADS = 1  # part of the compute budget: on a shared 2-core box one thread beats two (README)
LOG_EVERY = 10  # steps per train_loss point (the mean over those steps)
PRINT_EVERY = 200  # steps per progress line on stdout

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}


class CausalSelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(N_EMBD, 3 * N_EMBD)
        self.proj = nn.Linear(N_EMBD, N_EMBD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(N_EMBD, MLP_RATIO * N_EMBD)
        self.proj = nn.Linear(MLP_RATIO * N_EMBD, N_EMBD)
        self.act = ACTIVATIONS[ACTIVATION]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(N_EMBD)
        self.attn = CausalSelfAttention()
        self.ln2 = nn.LayerNorm(N_EMBD)
        self.mlp = MLP()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Pre-LayerNorm GPT over bytes: learned positions, output head tied to the byte embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(VOCAB_SIZE, N_EMBD)
        self.wpe = nn.Embedding(BLOCK_SIZE, N_EMBD)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(N_EMBD)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual projections, GPT-2 style
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * N_LAYER))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        assert T <= BLOCK_SIZE, f"sequence of {T} bytes exceeds BLOCK_SIZE={BLOCK_SIZE}"
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()


def lr_multiplier(progress: float) -> float:
    """Learning-rate factor for training progress in [0, 1]: warmup, then the SCHEDULE decay."""
    if WARMUP_FRAC > 0 and progress < WARMUP_FRAC:
        return max(progress / WARMUP_FRAC, 0.01)
    t = min(1.0, (progress - WARMUP_FRAC) / max(1e-9, 1.0 - WARMUP_FRAC))
    if SCHEDULE == "constant":
        return 1.0
    if SCHEDULE == "linear":
        return 1.0 - (1.0 - MIN_LR_FRAC) * t
    if SCHEDULE == "cosine":
        return MIN_LR_FRAC + (1.0 - MIN_LR_FRAC) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"SCHEDULE={SCHEDULE!r} is not one of 'cosine', 'linear', 'constant'")


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=(BETA1, BETA2))


def get_batch(train: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(0, train.numel() - BLOCK_SIZE - 1, (BATCH_SIZE, 1), generator=gen)
    chunk = train[starts + torch.arange(BLOCK_SIZE + 1)].long()
    return chunk[:, :-1], chunk[:, 1:]


def train_model(model: nn.Module, train: torch.Tensor, budget_s: float, steps: int | None) -> tuple[int, float]:
    """Train until the time budget (or the fixed step count) is used up; returns (steps, training seconds)."""
    opt = make_optimizer(model)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    step, elapsed, window = 0, 0.0, []
    t0 = time.perf_counter()
    while (step < steps) if steps is not None else (elapsed < budget_s):
        progress = step / steps if steps is not None else elapsed / budget_s
        for group in opt.param_groups:
            group["lr"] = LEARNING_RATE * lr_multiplier(progress)
        x, y = get_batch(train, gen)
        loss = F.cross_entropy(model(x).view(-1, VOCAB_SIZE), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if GRAD_CLIP > 0:
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        value = loss.item()
        if not math.isfinite(value) or value > 100:
            print(f"FAIL: training loss is {value} at step {step}")
            raise SystemExit(1)
        step += 1
        elapsed = time.perf_counter() - t0
        window.append(value)
        if step % LOG_EVERY == 0:
            tracekit.log_metric("train_loss", sum(window) / len(window), step=step)
            window.clear()
        if step % PRINT_EVERY == 0:
            print(f"step {step:05d} | loss {value:.4f} | lr {opt.param_groups[0]['lr']:.2e} | {elapsed:.1f}s",
                  flush=True)
    if window:
        tracekit.log_metric("train_loss", sum(window) / len(window), step=step)
    return step, elapsed


def main() -> None:
    t_start = time.perf_counter()
    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    budget_s, steps = time_budget_seconds(), fixed_steps()
    train = load_train()
    model = GPT()
    num_params = sum(p.numel() for p in model.parameters())
    mode = f"{steps} steps" if steps is not None else f"{budget_s:g} s"
    with tracekit.span("train", kind="run", mode=mode, num_params=num_params) as span:
        num_steps, training_s = train_model(model, train, budget_s, steps)
        model.eval()
        with tracekit.span("evaluate", kind="eval"):
            val_bpb = evaluate_bpb(model, context=BLOCK_SIZE)
            tracekit.log_metric("val_bpb", val_bpb, step=num_steps)
        span.set_attributes({"val_bpb": val_bpb, "num_steps": num_steps, "training_seconds": training_s})
    summary = {
        "val_bpb": val_bpb,
        "training_seconds": training_s,
        "total_seconds": time.perf_counter() - t_start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "total_tokens_M": num_steps * BATCH_SIZE * BLOCK_SIZE / 1e6,
        "tokens_per_s": num_steps * BATCH_SIZE * BLOCK_SIZE / max(training_s, 1e-9),
        "num_steps": num_steps,
        "num_params": num_params,
        "n_layer": N_LAYER,
    }
    print("---")
    for key, value in summary.items():
        print(f"{key + ':':<18}{value:.6f}" if isinstance(value, float) else f"{key + ':':<18}{value}")
    result_path = os.environ.get("TRACEKIT_RESULT")
    if result_path:
        with open(result_path, "w") as f:
            json.dump({"metrics": summary}, f)
    tracekit.flush()


if __name__ == "__main__":
    main()
