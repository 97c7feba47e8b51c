"""The live progress display of `tracekit optimize` (rich), or plain lines when not on a terminal.

Rationales, errors, warnings and metric names come from proposers and runs: every one is shown as
a Rich `Text` or through `say` (never as markup), with control characters made visible.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._util.termtext import clean
from ._common import cell, console, say, short

STATUS_STYLE = {"baseline": "cyan", "keep": "bold green", "discard": "dim", "crash": "red", "timeout": "red",
                "invalid": "yellow"}


class Progress:
    """Receives the optimizer's events (`on_event`) and renders them."""

    def __init__(self, title: str, iterations: int | None, metric: str, live: bool) -> None:
        self.title = clean(title, newlines=False)
        self.iterations = iterations
        self.metric = clean(metric, newlines=False)
        self.rows: list[dict[str, Any]] = []
        self.running: dict[str, str] = {}
        self.messages: list[str] = []
        self.started = time.monotonic()
        self.stopping: str | None = None
        self.live: Live | None = Live(self.render(), console=console, refresh_per_second=4, transient=False) if live else None

    def __enter__(self) -> "Progress":
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(exc_type, exc, tb)

    def _say(self, text: str) -> None:
        if self.live is None:
            say(text)
        else:
            self.messages = (self.messages + [clean(text)])[-4:]

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "launched":
            desc = "baseline" if data.get("baseline") else (data.get("description") or "")
            self.running[data["experiment_id"]] = desc
            if self.live is None:
                say(f"{data['experiment_id']}  running  {short(desc, 90)}")
        elif kind == "finished":
            row = data["row"]
            self.running.pop(row["experiment_id"], None)
            self.rows.append(row)
            if self.live is None:
                m = row.get("metric")
                imp = row.get("improvement")
                say(f"{row['experiment_id']}  {row['status']:<8} {self.metric}={'—' if m is None else f'{m:.6g}'}"
                    f"{'' if imp is None else f' ({imp:+.4g})'}  {short(row.get('description'), 70)}"
                    + (f"  [{short(row.get('error'), 80)}]" if row['status'] in ('crash', 'timeout', 'invalid') else ""))
        elif kind == "setup":
            self._say(f"setup: {data['command']}")
        elif kind == "resumed":
            self._say(f"resumed {data['experiment_id']}: {data['action']}")
        elif kind == "confirm":
            self._say(f"{data['experiment_id']}: {data['improvement']:+.4g} vs a threshold of {data['threshold']:.4g}; "
                      "running it again to decide on the mean")
        elif kind == "warning":
            self._say(f"warning: {data['message']}")
        elif kind == "stopping":
            self.stopping = data["reason"]
            self._say("stopping: aborting the runs in flight" if data.get("abort") else
                      f"stopping ({data['reason']}): finishing the runs in flight; Ctrl-C again to abort them")
        if self.live is not None:
            self.live.update(self.render())

    def render(self) -> Any:
        done = [r for r in self.rows if r.get("proposer") != "baseline"]
        base = [r["metric"] for r in self.rows if r["status"] == "baseline" and r.get("metric") is not None]
        keeps = [r for r in self.rows if r["status"] == "keep"]  # in the order they were decided
        best = keeps[-1]["metric"] if keeps else (sum(base) / len(base) if base else None)
        cost = sum(r.get("cost_usd") or 0.0 for r in self.rows)
        elapsed = time.monotonic() - self.started
        head = Text()
        head.append(f"experiment {len(done)}" + (f" of {self.iterations}" if self.iterations else ""), style="bold")
        head.append(f"   best {self.metric}: " + ("—" if best is None else f"{best:.6g}"), style="green")
        if base and best is not None:
            b = sum(base) / len(base)
            head.append(f" ({100 * (best - b) / abs(b or 1):+.2f}% vs baseline)")
        if self.rows:
            last = self.rows[-1]
            head.append("   last: ")
            head.append(clean(last["status"]), style=STATUS_STYLE.get(last["status"], ""))
        head.append(f"   cost ${cost:.4f}   {elapsed / 60:.1f} min")
        table = Table(show_header=True, header_style="bold", expand=True, box=None)
        for col, width in (("id", 14), ("status", 9), (self.metric, 10), ("vs inc.", 10), ("description", None)):
            table.add_column(Text(col), width=width, overflow="ellipsis", no_wrap=True)
        for r in self.rows[-10:]:
            m, imp = r.get("metric"), r.get("improvement")
            desc = r.get("description") or ""
            if r["status"] in ("crash", "timeout", "invalid") and r.get("error"):
                desc = f"{desc} [{(r['error'] or '').strip().splitlines()[-1]}]"
            table.add_row(cell(r["experiment_id"]), cell(r["status"], style=STATUS_STYLE.get(r["status"], "")),
                          "—" if m is None else f"{m:.6g}", "" if imp is None else f"{imp:+.4g}", cell(desc, 200))
        for eid, desc in self.running.items():
            table.add_row(cell(eid), Text("running", style="blue"), "", "", cell(desc, 200))
        parts: list[Any] = [head, table]
        if self.messages:
            parts.append(Text("\n".join(self.messages), style="dim"))
        return Panel(Group(*parts), title=Text(self.title), title_align="left")
