"""Cleaning invoice records: the file the optimizer edits (the eval suite in evals.py is fixed).

Each function is traced as a tool, so a failing case's trace shows which call failed and how.
"""

from __future__ import annotations

import tracekit

RATES = {"USD": 1.0, "GBP": 1.27}


@tracekit.trace(kind="tool")
def parse_amount(text: str) -> float:
    """'$12.50' -> 12.5"""
    return float(text.strip().lstrip("$"))


@tracekit.trace(kind="tool")
def to_usd(amount: float, currency: str) -> float:
    return round(amount * RATES[currency], 2)


@tracekit.trace(kind="tool")
def normalize_name(name: str | None) -> str:
    """'  ada LOVELACE ' -> 'Ada Lovelace'"""
    return " ".join(name.strip().split()).title()


@tracekit.trace(kind="tool")
def unit_price(total: float, quantity: int) -> float:
    return round(total / quantity, 2)


@tracekit.trace(kind="tool")
def parse_date(text: str) -> list[int]:
    """'2024/03/05' -> [2024, 3, 5]"""
    year, month, day = text.strip().split("/")
    return [int(year), int(month), int(day)]
