"""The fixed eval suite of the records target: every case calls one function of records.py.

    tracekit eval run evals.py --split train --split val
"""

from __future__ import annotations

import json

import records

import tracekit
from tracekit.evals import Sample, Score, Task, scorers


def _case(cid: str, split: str, op: str, arg: object, want: object) -> Sample:
    return Sample({"op": op, "arg": arg}, want, id=cid, split=split)


CASES = [
    # always fine
    _case("amount-plain-1", "train", "amount", "$12.50", 12.5),
    _case("amount-plain-2", "val", "amount", "7", 7.0),
    _case("usd-gbp-1", "train", "usd", ["100", "GBP"], 127.0),
    _case("usd-usd-1", "val", "usd", ["$40", "USD"], 40.0),
    _case("name-plain-1", "train", "name", "  ada LOVELACE ", "Ada Lovelace"),
    _case("name-plain-2", "val", "name", "grace hopper", "Grace Hopper"),
    _case("unit-plain-1", "train", "unit", [10, 4], 2.5),
    _case("unit-plain-2", "val", "unit", [9, 3], 3.0),
    # thousands separators
    _case("amount-comma-1", "train", "amount", "$1,234.50", 1234.5),
    _case("amount-comma-2", "train", "amount", "12,000", 12000.0),
    _case("amount-comma-3", "val", "amount", "$2,500.25", 2500.25),
    _case("amount-comma-4", "val", "amount", "1,000,000", 1000000.0),
    # euro invoices
    _case("usd-eur-1", "train", "usd", ["100", "EUR"], 108.0),
    _case("usd-eur-2", "train", "usd", ["$50", "EUR"], 54.0),
    _case("usd-eur-3", "val", "usd", ["10", "EUR"], 10.8),
    _case("usd-eur-4", "val", "usd", ["200", "EUR"], 216.0),
    # missing customer names
    _case("name-missing-1", "train", "name", None, ""),
    _case("name-missing-2", "train", "name", None, ""),
    _case("name-missing-3", "val", "name", None, ""),
    _case("name-missing-4", "val", "name", None, ""),
    # free items (quantity 0 means a credit line: unit price 0)
    _case("unit-zero-1", "train", "unit", [0, 0], 0.0),
    _case("unit-zero-2", "train", "unit", [5, 0], 0.0),
    _case("unit-zero-3", "val", "unit", [0.0, 0], 0.0),
    _case("unit-zero-4", "val", "unit", [12, 0], 0.0),
    # ISO dates
    _case("date-iso-1", "train", "date", "2024-03-05", [2024, 3, 5]),
    _case("date-iso-2", "train", "date", "1999-12-31", [1999, 12, 31]),
    _case("date-iso-3", "val", "date", "2020-02-29", [2020, 2, 29]),
    _case("date-iso-4", "val", "date", "2001-01-01", [2001, 1, 1]),
]


@tracekit.trace(kind="agent")
def process(case: dict) -> object:
    op, arg = case["op"], case["arg"]
    if op == "amount":
        result = records.parse_amount(arg)
    elif op == "usd":
        result = records.to_usd(records.parse_amount(arg[0]), arg[1])
    elif op == "name":
        result = records.normalize_name(arg)
    elif op == "unit":
        result = records.unit_price(*arg)
    else:
        result = records.parse_date(arg)
    return json.loads(json.dumps(result))


def equals(output: object, target: object) -> Score:
    ok = output == target or (isinstance(output, float) and isinstance(target, float) and abs(output - target) < 1e-9)
    return Score(ok, explanation=f"got {output!r}, want {target!r}")


suite = Task(CASES, solver=process, scorers=[scorers.python(equals)], name="records")
