"""FIXED: the data and the score. The optimizer may not edit this file."""
import json
from pathlib import Path

DATA = [json.loads(line) for line in (Path(__file__).parent / "data.jsonl").read_text().splitlines()]
TRAIN = [d for d in DATA if d["split"] == "train"]
VAL = [d for d in DATA if d["split"] == "val"]


def evaluate(predict, batches):
    """Mean squared error of `predict` on the first `batches` batches of 4 validation examples."""
    scored = VAL[: 4 * batches]
    return sum((predict(d["x"]) - d["y"]) ** 2 for d in scored) / len(scored), len(scored)
