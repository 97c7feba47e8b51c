"""The proposer's context: sections, each rendered from the store with a size budget.

A `Section` renders markdown for one proposal from the run's `experiments` rows (the ledger's,
already in memory) and SQL over the store (`spans`, `metrics` and the other views);
its text is cut to its budget by head/tail elision ("... 812 lines elided ..."), and when all
sections together exceed the total budget the least important ones shrink first. Sections marked
`trace=True` (errors and stack traces, metric curves, output tails, slowest spans) are left out with
`--feedback scores`, for ablations. Users add sections with `register_section()`; the eval
harness's sections (failing cases, their trajectories) live in `_context_evals`.

    builder = ContextBuilder(home, target, run_id, feedback="traces")
    system = builder.system()
    prompt = builder.render(Database(home), parent_row, ledger.rows, files, repair=None)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._context_evals import render_cases, render_trajectories
from ._section import Section, SectionInput, elide

if TYPE_CHECKING:
    from ..store import Database
    from ..store._tables import ExperimentRow
    from ._target import Target


DIGEST_BUDGET = 40_000  # characters of a trace digest: the trace sections' share of the 100k prompt


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[-1:] or [""]
    return line[0][:limit]


# -- the built-in sections ----------------------------------------------------------------------

def _repair(inp: SectionInput) -> str:
    if not inp.repair:
        return ""
    return ("Your previous proposal for this experiment was rejected before running:\n\n" + inp.repair
            + "\n\nPropose again, fixing that (SEARCH text must match the current file exactly).")


def _task(inp: SectionInput) -> str:
    t = inp.target
    if t is None:  # a trace digest (no target): this section is not one of its sections
        return ""
    scored = [(m, r["experiment_id"]) for r in inp.rows if r["status"] in ("baseline", "keep") and (m := r.get("metric")) is not None]
    best = (max if t.direction == "max" else min)(scored, key=lambda s: s[0]) if scored else None
    counts = Counter(r["status"] for r in inp.rows)
    lines = [
        f"- metric: `{t.metric}`, {'lower' if t.direction == 'min' else 'higher'} is better",
        f"- incumbent (the code below): experiment {inp.parent.get('experiment_id')} with {t.metric} = {_fmt(inp.parent.get('metric'))}",
    ]
    if best:
        lines.append(f"- best so far: {best[1]} with {_fmt(best[0])}")
    noise = inp.parent.get("noise")
    if noise is not None:
        lines.append(f"- run-to-run noise (stdev over baseline runs): {_fmt(noise)}; a keep must improve by more than "
                     f"{_fmt(inp.parent.get('threshold'))}")
    lines.append(f"- time budget per run: {t.budget_s:g} s wall clock (enforced outside the code)")
    if counts:
        lines.append("- experiments so far: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return "\n".join(lines)


def _files(inp: SectionInput) -> str:
    parts = []
    for path, content in sorted(inp.files.items()):
        parts.append(f"FILE: {path}\n```\n{content.rstrip()}\n```")
    return "\n\n".join(parts)


def _history(inp: SectionInput) -> str:
    trace = inp.trace
    rows = inp.rows[-25:]
    if not rows:
        return ""
    lines = ["| id | status | metric | vs incumbent | description |" + (" why it failed |" if trace else ""),
             "|---|---|---|---|---|" + ("---|" if trace else "")]
    for r in rows:
        imp = r["improvement"]
        cells = [r["experiment_id"], r["status"], _fmt(r["metric"]),
                 "—" if imp is None else f"{imp:+.4g}", (r["description"] or "").replace("|", "/")[:200]]
        if trace:
            why = _first_line(r["error"]) if r["status"] in ("crash", "timeout", "invalid") else ""
            cells.append(why.replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\n(vs incumbent: positive = better than the code it started from)")
    return "\n".join(lines)


def _recent_diffs(inp: SectionInput) -> str:
    rows = [(r, diff) for r in inp.rows if r["status"] != "baseline" and (diff := r.get("diff"))][-3:]
    parts = []
    for r, diff in rows:
        improvement = r["improvement"]
        imp = "" if improvement is None else f", {improvement:+.4g} vs its incumbent"
        parts.append(f"### {r['experiment_id']} ({r['status']}{imp})\n```diff\n{elide(diff.rstrip(), 2500)}\n```")
    return "\n\n".join(parts)


def _errors(inp: SectionInput) -> str:
    parts = []
    stacks: dict[str, list[str]] = {}
    for r in inp.sql(
            "SELECT experiment_id, json_extract_string(ev.attributes, '$.\"exception.stacktrace\"') AS stack, "
            "json_extract_string(ev.attributes, '$.\"exception.message\"') AS message, span_name FROM ("
            "SELECT experiment_id, name AS span_name, unnest(events) AS ev FROM spans WHERE "
            f"{inp.trace_filter()} AND len(events) > 0) WHERE ev.name = 'exception'"):
        text = (r["stack"] or r["message"] or "").strip()
        seen = stacks.setdefault(r["experiment_id"] or "", [])
        if text and all(text not in s and s not in text for s in seen):
            seen.append(f"(span {r['span_name']})\n{text}")
    for f in inp.focus:
        if f["status"] not in ("crash", "timeout") and not f.get("error"):
            continue
        block = [f"### {f['experiment_id']}: {f['status']} (run status {f.get('run_status')}, exit code {_fmt(f.get('exit_code'))})"]
        if error := f.get("error"):
            block.append(f"error: {elide(error, 600)}")
        for s in stacks.get(f["experiment_id"], [])[:2]:
            block.append("stack trace (from its spans):\n```\n" + elide(s, 2500, keep="tail") + "\n```")
        if stderr_tail := f.get("stderr_tail"):
            block.append("stderr tail:\n```\n" + elide(stderr_tail.rstrip(), 2500, keep="tail") + "\n```")
        parts.append("\n".join(block))
    return "\n\n".join(parts)


def _curves(inp: SectionInput) -> str:
    rows = inp.sql(
        "WITH m AS (SELECT experiment_id, trace_id, name, step, value, "
        "row_number() OVER (PARTITION BY trace_id, name ORDER BY step NULLS LAST, time) AS rn, "
        "count(*) OVER (PARTITION BY trace_id, name) AS n FROM metrics WHERE " + inp.trace_filter() + " AND value IS NOT NULL) "
        "SELECT experiment_id, name, step, value, n FROM m WHERE n <= 16 OR rn = 1 OR rn = n "
        "OR (rn - 1) % greatest(1, n // 14) = 0 ORDER BY experiment_id, name, rn")
    series: dict[tuple[str, str], list[str]] = {}
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["experiment_id"] or "?", r["name"])
        series.setdefault(key, []).append(f"{r['step'] if r['step'] is not None else '·'}: {r['value']:.4g}")
        counts[key] = r["n"]
    order = {f["experiment_id"]: i for i, f in enumerate(inp.focus)}
    lines = [f"- {exp} `{name}` ({counts[(exp, name)]} points, step: value): " + ", ".join(pts)
             for (exp, name), pts in sorted(series.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1]))]
    return "\n".join(lines)


def _output(inp: SectionInput) -> str:
    parts = []
    for f in inp.focus:
        if stdout_tail := f.get("stdout_tail"):
            parts.append(f"### {f['experiment_id']} ({f['status']}) stdout tail\n```\n{elide(stdout_tail.rstrip(), 1500, keep='tail')}\n```")
    return "\n\n".join(parts)


def _slowest(inp: SectionInput) -> str:
    rows = inp.sql(
        "SELECT experiment_id, name, kind, round(duration_ms, 1) AS ms, status FROM spans WHERE "
        + inp.trace_filter() + " AND name NOT LIKE 'optimizer.%' ORDER BY duration_ms DESC LIMIT 8")
    return "\n".join(f"- {r['experiment_id']} {r['name']} ({r['kind']}): {r['ms']} ms{', ' + r['status'] if r['status'] == 'error' else ''}"
                     for r in rows)


SECTIONS: list[Section] = [
    Section("repair", "Repair needed", _repair, budget=3000, priority=0),
    Section("task", "Task", _task, budget=3000, priority=0),
    Section("file", "Current code (the incumbent)", _files, budget=60000, priority=1, keep="head"),
    Section("history", "History (oldest first; reverts and crashes included)", _history, budget=8000, priority=2, keep="tail"),
    Section("errors", "Errors of the incumbent and recent runs", _errors, budget=8000, priority=3, trace=True),
    Section("eval_cases", "Failing eval cases (train split) of the incumbent and recent runs", render_cases,
            budget=8000, priority=3, trace=True, keep="head"),
    Section("eval_trajectories", "Trajectories of failing train cases of the incumbent (LLM and tool calls)",
            render_trajectories, budget=12000, priority=4, trace=True, keep="head"),
    Section("curves", "Metric curves of the incumbent and recent runs (from the metrics view)", _curves, budget=4000,
            priority=4, trace=True),
    Section("diffs", "Diffs of the last experiments", _recent_diffs, budget=8000, priority=5, keep="tail"),
    Section("output", "Output tails", _output, budget=4000, priority=6, trace=True),
    Section("slowest", "Slowest spans", _slowest, budget=2000, priority=7, trace=True),
]


def _sections() -> list[Section]:
    return list(SECTIONS)


def register_section(section: Section, before: str | None = None) -> None:
    """Add a section (replacing one with the same name); `before` places it ahead of another."""
    SECTIONS[:] = [s for s in SECTIONS if s.name != section.name]
    idx = next((i for i, s in enumerate(SECTIONS) if s.name == before), len(SECTIONS))
    SECTIONS.insert(idx, section)


@dataclass
class ContextBuilder:
    home: Path
    target: "Target"
    run_id: str
    feedback: str = "traces"
    total_budget: int = 100_000  # characters of the per-experiment prompt (about 25k tokens)
    sections: list[Section] = field(default_factory=_sections)

    def system(self) -> str:
        """The stable prompt prefix: role, rules, the human's program, output format (cached by LLM proposers)."""
        t = self.target
        program = t.program_text().strip()
        rules = [
            f"You improve a program by editing only these files: {', '.join(t.editable)}.",
            f"Everything else is fixed{' (' + ', '.join(t.fixed) + ', checked by hash)' if t.fixed else ''}: the evaluation, "
            "the data, the time budget and the metric. Do not try to change or bypass them.",
            f"Goal: {'lower' if t.direction == 'min' else 'higher'} `{t.metric}`. Each candidate runs once under a fixed "
            f"wall-clock budget of {t.budget_s:g} s; crashes and timeouts count as failures.",
            "Make one focused change per experiment, learn from the history (do not repeat a reverted idea), and "
            "read the errors and metric curves of past runs. No new dependencies. Simpler code wins ties.",
        ]
        fmt = (
            "Answer with one line `RATIONALE: <at most 50 words: what you change and why>`, then the edit as one or "
            "more SEARCH/REPLACE blocks:\n\n"
            "train.py\n<<<<<<< SEARCH\n<lines copied exactly from the current file>\n=======\n<their replacement>\n"
            ">>>>>>> REPLACE\n\n"
            "or, to rewrite a whole file, `FILE: <path>` followed by a fenced code block with the complete new content."
        ).replace("train.py", t.editable[0])
        out = "# Role and rules\n" + "\n".join(f"- {r}" for r in rules)
        if program:
            out += "\n\n# Program (the human's direction)\n" + elide(program, 12000)
        return out + "\n\n# Output format\n" + fmt

    def render(self, db: "Database", parent: Mapping[str, Any], rows: list[ExperimentRow], files: dict[str, str],
               repair: str | None = None) -> str:
        recent = [r for r in reversed(rows) if r["status"] not in ("invalid",) and r["experiment_id"] != parent.get("experiment_id")][:2]
        focus: list[Mapping[str, Any]] = [parent, *recent]
        db.refresh()
        inp = SectionInput(db, self.target, self.run_id, parent, rows, files, focus, repair, self.feedback == "traces")
        chosen = [s for s in self.sections if not s.trace or self.feedback == "traces"]
        return render_sections(inp, chosen, self.total_budget)


def render_sections(inp: SectionInput, sections: list[Section], total_budget: int) -> str:
    """Each section rendered and cut to its budget; past `total_budget`, the least important shrink first.

    The one renderer behind the built-in proposer's prompt and the backend API's trace digest
    (`trace_digest`), so both show the same evidence under the same budgets.
    """
    rendered: list[tuple[Section, str]] = []
    for s in sections:
        try:
            body = s.render(inp).strip()
        except Exception as exc:  # a section must never block a proposal
            body = f"(section unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        if body:
            rendered.append((s, elide(body, s.budget, s.keep)))
    total = sum(len(b) for _, b in rendered)
    if total > total_budget:
        for s in sorted((s for s, _ in rendered), key=lambda s: -s.priority):
            if total <= total_budget or s.priority <= 1:
                continue
            i = next(i for i, (x, _) in enumerate(rendered) if x is s)
            old = rendered[i][1]
            new = elide(old, max(200, len(old) - (total - total_budget)), s.keep)
            rendered[i] = (s, new)
            total += len(new) - len(old)
    return "\n\n".join(f"## {s.title}\n{b}" for s, b in rendered)


def trace_digest(db: "Database", focus: list[Mapping[str, Any]], total_budget: int = DIGEST_BUDGET,
                 only: Sequence[str] | None = None) -> str:
    """The trace sections of the proposer's context (errors and stack traces, failing cases with their
    trajectories, metric curves, output tails, slowest spans) for `focus`: `experiments` rows, the
    first one in the incumbent's place; `only` picks sections by name. Same sections, same budgets,
    same renderer as the prompt."""
    if not focus:
        return ""
    db.refresh()
    inp = SectionInput(db, None, str(focus[0].get("run_id") or ""), focus[0], [], {}, focus, None, True)
    chosen = [s for s in SECTIONS if s.trace and (only is None or s.name in only)]
    return render_sections(inp, chosen, total_budget)
