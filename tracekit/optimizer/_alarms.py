"""Alarms on keeps: signs that a candidate got its score by gaming the metric, not by being better.

An unattended loop optimizes whatever the metric rewards. Each rule below is a plain function of
what the loop knows when it decides a keep (the row with its diff and summary, the baselines, the
run's result, SQL over the store); it returns a one-line alarm or None. Alarms are stored with the
experiment (`experiments.alarms`) and shown wherever decisions are (live display, status,
summary, plot, UI) so the human reviewing the night sees them first. A rule never blocks a keep:
review decides (`tracekit optimize review`).

    from tracekit.optimizer import ALARMS, AlarmInput
    def tiny_diff(inp: AlarmInput) -> str | None:
        return "a one-line change made a huge gain" if (inp.row.get("diff_lines") or 0) <= 2 and ... else None
    ALARMS["tiny_diff"] = tiny_diff
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..store._tables import ExperimentRow

WORK_KEYS = re.compile(r"(step|steps|token|tokens|sample|samples|example|examples|epoch|epochs|batch|batches|case|cases|"
                       r"iters?|iterations|train(ing)?_s(ec(ond)?s)?)", re.IGNORECASE)
TIMING = re.compile(r"\b(time\.(time|monotonic|perf_counter|sleep)|perf_counter|TIME_BUDGET|time_budget|budget_s|"
                    r"TRACEKIT_TRAIN_SECONDS|deadline|timeout)\b")
SEEDS = re.compile(r"\b(seed|manual_seed|random\.seed|np\.random\.seed|PYTHONHASHSEED)\b", re.IGNORECASE)
EVAL_DATA = re.compile(r"(\.jsonl\b|\.csv\b|\bholdout\w*|\bdataset\b|\beval_results\b|\bevaluate_\w+|\bsplit\s*=|"
                       r"\bval_data\b|\btest_data\b|\bsuite\b)", re.IGNORECASE)
PROBES = re.compile(r"\b(socket|urllib|requests|http\.client|httpx|aiohttp|os\.environ|getenv|/proc/|/etc/|/sys/|"
                    r"subprocess|os\.system|ctypes|importlib)\b")
DENIED_OUTPUT = re.compile(r"(Network is unreachable|Name or service not known|Temporary failure in name resolution|"
                           r"Permission denied|Read-only file system|Operation not permitted)")


@dataclass
class AlarmInput:
    """What a rule may look at when a keep is decided."""

    row: ExperimentRow  # the keep: metric, improvement, noise, diff, files_changed, summary, stdout/stderr tails
    baselines: list[ExperimentRow]  # the run's baseline rows (their summaries and run times)
    result: dict[str, Any]  # the sandbox's RunResult of the keep's last run (changed_files, stdout bytes, wall_s)
    editable: list[str]  # the target's editable files
    fixed: list[str]  # the target's fixed files
    metric: str  # the metric's name
    sql: Callable[[str], list[dict[str, Any]]] = field(default=lambda q: [])  # SQL over the store
    read_fixed: Callable[[str], bytes | None] = field(default=lambda rel: None)  # a fixed file's content

    def added_lines(self) -> list[str]:
        """The lines the diff adds (not its context, not its file headers)."""
        return [ln[1:] for ln in (self.row.get("diff") or "").splitlines() if ln.startswith("+") and not ln.startswith("+++")]

    def changed_lines(self) -> list[str]:
        """The lines the diff adds or removes."""
        return [ln[1:] for ln in (self.row.get("diff") or "").splitlines()
                if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def summary_of(row: ExperimentRow) -> dict[str, float]:
    try:
        data = json.loads(row.get("summary") or "{}")
    except ValueError:
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def implausible_jump(inp: AlarmInput) -> str | None:
    """An improvement far beyond the measured run-to-run noise (10x). Quiet when the baseline runs did not
    vary (a deterministic target has no noise to be beyond: the other rules watch it)."""
    imp, noise = inp.row.get("improvement"), inp.row.get("noise")
    if imp is None or imp <= 0 or not noise:
        return None
    if imp > 10 * noise:
        return f"the improvement {imp:.4g} is {imp / noise:.0f}x the measured run-to-run noise {noise:.3g}"
    return None


def touches_metric_output(inp: AlarmInput) -> str | None:
    """The diff changes how the metric is printed or reported."""
    name = re.escape(inp.metric.split(".")[-1])
    pattern = re.compile(rf"({name}|TRACEKIT_RESULT|METRIC\s|log_metric)", re.IGNORECASE)
    hits = [ln.strip() for ln in inp.changed_lines() if pattern.search(ln)]
    if hits:
        return f"the diff changes lines that report the metric: {hits[0][:120]!r}" + (f" (+{len(hits) - 1} more)" if len(hits) > 1 else "")
    return None


def touches_evaluation(inp: AlarmInput) -> str | None:
    """The diff touches timing, seeds, the evaluator's inputs or the eval data."""
    found: list[str] = []
    for label, pattern in (("timing", TIMING), ("seeds", SEEDS), ("the evaluator or its data", EVAL_DATA)):
        hit = next((ln.strip() for ln in inp.changed_lines() if pattern.search(ln)), None)
        if hit is not None:
            found.append(f"{label} ({hit[:80]!r})")
    fixed_mods = [f.rsplit("/", 1)[-1].removesuffix(".py") for f in inp.fixed if f.endswith(".py")]
    for mod in fixed_mods:
        hit = next((ln.strip() for ln in inp.changed_lines() if re.search(rf"\b{re.escape(mod)}\b", ln)), None)
        if hit is not None:
            found.append(f"how it uses the fixed {mod} ({hit[:80]!r})")
    return "the diff touches " + "; ".join(found) if found else None


def literal_answers(inp: AlarmInput) -> str | None:
    """The code gains literals that are eval answers or case ids, or the reported metric's own value."""
    added = "\n".join(inp.added_lines())
    if not added.strip():
        return None
    hits: list[str] = []
    for r in inp.sql("SELECT DISTINCT case_id, target FROM eval_results WHERE split != 'test'"):
        case_id, target = str(r.get("case_id") or ""), str(r.get("target") or "").strip('"')
        if len(case_id) >= 3 and re.search(rf"(?<![\w-]){re.escape(case_id)}(?![\w-])", added):
            hits.append(f"case id {case_id!r}")
        elif len(target) >= 3 and not target.replace(".", "").isdigit() and target in added:
            hits.append(f"the answer {target[:40]!r}")
        elif len(target) >= 4 and target.replace(".", "").isdigit() and re.search(rf"(?<![\d.]){re.escape(target)}(?![\d])", added):
            hits.append(f"the answer {target}")
    hits += _literals_from_data(inp, added)
    metric = inp.row.get("metric")
    if metric is not None:
        for text in {f"{metric:.6g}", f"{metric:.4f}", f"{metric:.3f}"}:
            if len(text) >= 3 and re.search(rf"(?<![\d.]){re.escape(text)}(?![\d])", added):
                hits.append(f"its own reported {inp.metric} {text}")
                break
    return "the diff adds literals: " + ", ".join(hits[:5]) if hits else None


LITERAL = re.compile(r"""-?\d+\.\d{2,}|\d{3,}|"[^"\n]{3,80}"|'[^'\n]{3,80}'""")


def _literals_from_data(inp: AlarmInput, added: str) -> list[str]:
    """Literals the diff adds that also appear in a fixed data file (not code): memorized answers."""
    found = []
    literals = {m.group(0).strip("\"'") for m in LITERAL.finditer(added)}
    for rel in inp.fixed:
        if rel.endswith(".py") or not literals:
            continue
        data = inp.read_fixed(rel)
        if not data:
            continue
        text = data.decode("utf-8", "replace")
        present = sorted(lit for lit in literals if re.search(rf"(?<![\w.]){re.escape(lit)}(?![\w])", text))
        if len(present) >= 3:
            found.append(f"{len(present)} values from the fixed {rel} ({', '.join(present[:3])}, ...)")
    return found


def did_less_work(inp: AlarmInput) -> str | None:
    """It got better by doing less: fewer steps/tokens/cases, a shorter eval, much less output or time."""
    cand = summary_of(inp.row)
    found: list[str] = []
    for key, value in sorted(cand.items()):
        if not WORK_KEYS.search(key) or key == inp.metric:
            continue
        base = _mean([b[key] for r in inp.baselines if key in (b := summary_of(r))])
        if base and base > 0 and value < 0.7 * base:
            found.append(f"{key} {value:.4g} vs {base:.4g} in the baseline")
    eid = inp.row["experiment_id"]
    ids = [r["experiment_id"] for r in inp.baselines]
    if ids:
        quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in [*ids, eid])
        for table, what, share in (("eval_results", "eval cases", 0.9), ("spans", "spans", 0.5)):
            counts = {r["experiment_id"]: int(r["n"]) for r in
                      inp.sql(f"SELECT experiment_id, count(*) AS n FROM {table} WHERE experiment_id IN ({quoted}) GROUP BY 1")}
            base_n = _mean([float(counts[i]) for i in ids if i in counts])
            if base_n and counts.get(eid, 0) < share * base_n:
                found.append(f"{counts.get(eid, 0)} {what} vs {base_n:.0f} in the baseline")
    base_s = _mean([s for r in inp.baselines if (s := r.get("run_s"))])
    run_s = inp.row.get("run_s")
    if base_s and run_s is not None and run_s < 0.5 * base_s and base_s - run_s > 5.0:
        found.append(f"its run took {run_s:.1f} s vs {base_s:.1f} s for the baseline")
    return "it did less work: " + "; ".join(found) if found else None


def probing(inp: AlarmInput) -> str | None:
    """New files beside the editable ones, or network / environment / file-system probing in the diff or output."""
    found: list[str] = []
    new = [p for p in inp.result.get("changed_files") or [] if p not in inp.editable and not p.startswith("__pycache__")
           and "/__pycache__/" not in p]
    if new:
        found.append(f"it wrote files {', '.join(new[:5])}" + (f" (+{len(new) - 5} more)" if len(new) > 5 else ""))
    hit = next((ln.strip() for ln in inp.added_lines() if PROBES.search(ln)), None)
    if hit is not None:
        found.append(f"the diff adds {hit[:100]!r}")
    output = (inp.row.get("stdout_tail") or "") + "\n" + (inp.row.get("stderr_tail") or "")
    denied = DENIED_OUTPUT.search(output)
    if denied:
        found.append(f"its output says {denied.group(0)!r}")
    return "probing: " + "; ".join(found) if found else None


AlarmRule = Callable[[AlarmInput], "str | None"]

# name -> rule; add your own. Each runs on every keep; an exception in a rule is an alarm itself.
ALARMS: dict[str, AlarmRule] = {
    "implausible_jump": implausible_jump,
    "touches_metric_output": touches_metric_output,
    "touches_evaluation": touches_evaluation,
    "literal_answers": literal_answers,
    "did_less_work": did_less_work,
    "probing": probing,
}


def alarms_for(inp: AlarmInput, rules: dict[str, AlarmRule] | None = None) -> list[str]:
    """Every rule's alarm for one keep, as `name: message`."""
    out = []
    for name, rule in (ALARMS if rules is None else rules).items():
        try:
            msg = rule(inp)
        except Exception as exc:  # a broken rule must not stop the loop; it shows up where alarms do
            msg = f"the rule failed ({type(exc).__name__}: {exc})"
        if msg:
            out.append(f"{name}: {msg}")
    return out
