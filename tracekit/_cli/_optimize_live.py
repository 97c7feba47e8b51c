"""The progress of `tracekit optimize`: a live panel on a terminal, timestamped plain lines in a log.

Both say where the run stands at every moment: each running experiment's elapsed time against its
budget, how many experiments are done of how many, when the whole optimization should end (from
the measured time per experiment), and for each decision why, with its numbers.

Rationales, errors, warnings and metric names come from proposers and runs: every one is shown as
a Rich `Text` or through `say` (never as markup), with control characters made visible.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._util.termtext import clean
from ..optimizer._explain import reason_of, short_reason
from ..store._tables import ExperimentRow
from ._common import cell, console, say, short

STATUS_STYLE = {"baseline": "cyan", "keep": "bold green", "discard": "dim", "crash": "red", "timeout": "red",
                "invalid": "yellow"}
HEARTBEAT_S = 30.0  # plain mode: a status line at least this often while runs are in flight


def clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """Receives the optimizer's events (`on_event`) and renders them."""

    def __init__(self, title: str, iterations: int | None, metric: str, live: bool, *, budget_s: float = 0.0,
                 workers: int = 1, max_time_s: float | None = None, baseline_runs: int = 0) -> None:
        self.title = clean(title, newlines=False)
        self.iterations = iterations
        self.metric = clean(metric, newlines=False)
        self.budget_s = budget_s
        self.workers = max(workers, 1)
        self.max_time_s = max_time_s
        self.baseline_runs = baseline_runs
        self.rows: list[ExperimentRow] = []
        self.earlier = 0  # experiments a resumed run had done before this session
        self.running: dict[str, tuple[str, float]] = {}  # id -> (description, started)
        self.messages: list[str] = []
        self.started = time.monotonic()
        self.stopping: str | None = None
        self._lock = threading.Lock()
        self._quit = threading.Event()
        self._beat: threading.Thread | None = None
        self._last_line = time.monotonic()
        self.live: Live | None = Live(get_renderable=self.render, console=console, refresh_per_second=2,
                                      transient=False) if live else None

    def __enter__(self) -> "Progress":
        if self.live is not None:
            self.live.__enter__()
        else:
            self._beat = threading.Thread(target=self._heartbeat, name="tracekit-progress", daemon=True)
            self._beat.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._quit.set()
        if self.live is not None:
            self.live.__exit__(exc_type, exc, tb)

    # -- what the numbers are --------------------------------------------------------------------

    def done(self) -> int:
        """Experiments decided (baseline runs not counted), this session and before it."""
        return self.earlier + sum(1 for r in self.rows if r.get("proposer") != "baseline")

    def per_experiment_s(self) -> float:
        """Measured wall time of one experiment (proposal, run, decision); the budget until one is measured."""
        took = [t for r in self.rows if (t := r.get("total_s")) and r["status"] != "invalid"]
        return sum(took) / len(took) if took else self.budget_s * 1.1 + 5.0

    def eta_s(self) -> float | None:
        """Seconds until the run should end (None when nothing bounds it)."""
        now = time.monotonic()
        bounds: list[float] = []
        if self.iterations is not None:
            base_left = max(self.baseline_runs - sum(1 for r in self.rows if r["status"] == "baseline"), 0)
            running_new = sum(1 for d, _ in self.running.values() if d != "baseline")
            to_launch = max(self.iterations - self.done() - running_new, 0) + max(base_left - len(self.running), 0)
            each = self.per_experiment_s()
            in_flight = max((each - (now - t0) for _, t0 in self.running.values()), default=0.0)
            bounds.append(max(in_flight, 0.0) + to_launch * each / self.workers)
        if self.max_time_s is not None:
            bounds.append(max(self.max_time_s - (now - self.started), 0.0))
        return min(bounds) if bounds else None

    def where(self) -> str:
        """One line: done of total, elapsed, ETA."""
        total = f" of {self.iterations}" if self.iterations is not None else ""
        line = f"{self.done()}{total} experiments done, {clock(time.monotonic() - self.started)} elapsed"
        eta = self.eta_s()
        if eta is not None:
            end = time.strftime("%H:%M", time.localtime(time.time() + eta))
            line += f", ends around {end} (about {clock(eta)} from now)"
        elif not self.stopping:
            line += ", no end set (--iterations, --max-time; or `tracekit optimize stop`)"
        return line

    # -- events ----------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if self.live is None:
            say(time.strftime("[%H:%M:%S] ") + text)
            self._last_line = time.monotonic()
        else:
            self.messages = (self.messages + [clean(text)])[-4:]

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._event(kind, data)
        if self.live is not None:
            self.live.refresh()

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "start":
            self.earlier = int(data.get("experiments_done", 0))
            if data.get("resumed"):
                left = "" if self.iterations is None else (
                    f"; --iterations {self.iterations} counts the whole run, so {max(self.iterations - self.earlier, 0)} more")
                self._say(f"resuming run {data['run_id']}: {self.earlier} experiments already decided{left}")
        elif kind == "launched":
            desc = "baseline" if data.get("baseline") else (data.get("description") or "")
            self.running[data["experiment_id"]] = (desc, time.monotonic())
            if self.live is None:
                self._say(f"{data['experiment_id']}  running (budget {clock(self.budget_s)})  {short(desc, 90)}")
        elif kind == "finished":
            row: ExperimentRow = data["row"]
            self.running.pop(row["experiment_id"], None)
            self.rows.append(row)
            if self.live is None:
                self._say(f"{row['experiment_id']}  {row['status']:<8} {short(row.get('description'), 70)}")
                self._say(f"    {reason_of(row)}")
                for alarm in row.get("alarms") or []:
                    self._say(f"    ALARM {alarm}")
                self._say(f"    {self.where()}")
        elif kind == "setup":
            self._say(f"setup: {data['command']}")
        elif kind == "resumed":
            self._say(f"resumed {data['experiment_id']}: {data['action']}")
        elif kind == "confirm":
            self._say(f"{data['experiment_id']}: {data['improvement']:+.4g} is close to the keep threshold "
                      f"{data['threshold']:.4g}; running it again to decide on the mean of two runs")
        elif kind == "warning":
            self._say(f"warning: {data['message']}")
        elif kind == "stopping":
            self.stopping = data["reason"]
            self._say("stopping: aborting the runs in flight" if data.get("abort") else
                      f"stopping ({data['reason']}): finishing the runs in flight; Ctrl-C again to abort them")

    def _heartbeat(self) -> None:
        while not self._quit.wait(1.0):
            if self.running and time.monotonic() - self._last_line >= HEARTBEAT_S:
                with self._lock:
                    now = time.monotonic()
                    runs = ", ".join(f"{eid} {clock(now - t0)} of {clock(self.budget_s)}"
                                     for eid, (_, t0) in self.running.items())
                    self._say(f"running: {runs}; {self.where()}")

    # -- the live panel ---------------------------------------------------------------------------

    def render(self) -> Any:
        with self._lock:
            return self._panel()

    def _panel(self) -> Any:
        base = [m for r in self.rows if r["status"] == "baseline" and (m := r.get("metric")) is not None]
        keeps = [r for r in self.rows if r["status"] == "keep"]  # in the order they were decided
        best = keeps[-1].get("metric") if keeps else (sum(base) / len(base) if base else None)
        cost = sum(r.get("cost_usd") or 0.0 for r in self.rows)
        head = Text()
        head.append(f"best {self.metric}: " + ("—" if best is None else f"{best:.6g}"), style="green")
        if base and best is not None:
            b = sum(base) / len(base)
            head.append(f" ({100 * (best - b) / abs(b or 1):+.2f}% vs baseline)")
        head.append(f"   cost ${cost:.4f}\n")
        head.append(self.where(), style="bold")
        table = Table(show_header=True, header_style="bold", expand=True, box=None)
        for col, width in (("id", 14), ("status", 9), (self.metric, 10), ("why", 26), ("description", None)):
            table.add_column(Text(col), width=width, overflow="ellipsis", no_wrap=True)
        for r in self.rows[-10:]:
            m = r.get("metric")
            table.add_row(cell(r["experiment_id"]), cell(r["status"], style=STATUS_STYLE.get(r["status"], "")),
                          "—" if m is None else f"{m:.6g}", cell(short_reason(r), 60), cell(r.get("description") or "", 200))
        now = time.monotonic()
        for eid, (desc, t0) in self.running.items():
            table.add_row(cell(eid), Text("running", style="blue"), "", Text(f"{clock(now - t0)} of {clock(self.budget_s)}"),
                          cell(desc, 200))
        parts: list[Any] = [head, table]
        if self.rows:
            parts.append(Text(f"last decision: {clean(reason_of(self.rows[-1]), newlines=False)}", style="dim"))
        if self.messages:
            parts.append(Text("\n".join(self.messages), style="dim"))
        return Panel(Group(*parts), title=Text(self.title), title_align="left")
