"""EDITABLE: fit y = w * x + b."""
# --- tunable ---
LR = 0.01  # learning rate
STEPS = 100  # gradient steps
# --- end tunable ---
from prepare import TRAIN, evaluate

w, b = 0.0, 0.0
for step in range(STEPS):
    gw = sum(2 * (w * d["x"] + b - d["y"]) * d["x"] for d in TRAIN) / len(TRAIN)
    gb = sum(2 * (w * d["x"] + b - d["y"]) for d in TRAIN) / len(TRAIN)
    w, b = w - LR * gw, b - LR * gb


def predict(x):
    return w * x + b


EVAL_BATCHES = 8  # validation batches of 4 examples
loss, examples = evaluate(predict, EVAL_BATCHES)
print(f"num_steps: {STEPS}")
print(f"eval_examples: {examples}")
print(f"val_loss: {loss:.6f}")
