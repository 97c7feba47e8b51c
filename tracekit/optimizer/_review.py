"""Review: a human approves or rejects each kept experiment; rejected keeps leave the run's branch.

    items = review_items(home, run_id)          # the keeps in order: diff, rationale, reason, alarms, ...
    record_decision(home, run_id, "main-0004", "reject", why="prints a fake metric", author="ana")
    chain = rebuild_branch(session)             # baseline + every keep not rejected, later keeps rebased

Decisions are annotations (kind experiment, label approve | reject, source review): queryable, and
the latest per experiment wins. The branch is rebuilt from the baseline: a keep whose parent chain
is unchanged keeps its commit; a keep after a rejected one is rebased (its own edit applied with a
three-way merge onto the new chain, marked to re-measure) or, when its edit no longer applies,
dropped from the chain. `<run>/review.json` records the resulting chain, which the loop's
incumbent, `optimize promote` and `optimize confirm` follow.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._errors import OptimizerError
from ..store._tables import AnnotationRow, ExperimentRow
from ._explain import reason_of
from ._ledger import keeps_in_order
from ._safefs import write_file

DECISIONS = ("approve", "reject")


@dataclass
class ChainLink:
    experiment_id: str
    commit: str
    rebased: bool = False  # its edit was applied onto a different parent: its metric needs re-measuring


@dataclass
class Chain:
    """The run's branch after review: the baseline commit and the keeps still on it."""

    baseline_commit: str
    links: list[ChainLink] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # after a rejection their edit no longer applied
    updated_at: str = ""

    @property
    def head(self) -> str:
        return self.links[-1].commit if self.links else self.baseline_commit

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def chain_path(home: Path, run_id: str) -> Path:
    return Path(home) / "optimizer" / run_id / "review.json"


def load_chain(home: Path, run_id: str) -> Chain | None:
    """The chain a review left, or None when the run was never reviewed."""
    path = chain_path(home, run_id)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise OptimizerError(f"{path} is not the review's JSON ({exc}); delete it and review again") from None
    return Chain(data["baseline_commit"], [ChainLink(**x) for x in data.get("links", [])], list(data.get("rejected", [])),
                 list(data.get("dropped", [])), str(data.get("updated_at", "")))


def decisions(home: Path, keep_ids: list[str]) -> dict[str, AnnotationRow]:
    """The latest review decision per kept experiment (approve or reject)."""
    from .._query import database
    from ..store._annotations import latest_labels

    db = database(home)
    return latest_labels(db, "experiment", keep_ids, DECISIONS) if (Path(home) / "annotations").is_dir() else {}


def record_decision(home: Path, run_id: str, experiment_id: str, decision: str, *, why: str | None = None,
                    author: str | None = None) -> AnnotationRow:
    from ..store._annotations import write_annotation

    if decision not in DECISIONS:
        raise OptimizerError(f"decision {decision!r}: approve or reject")
    if decision == "reject" and not (why or "").strip():
        raise OptimizerError(f"say why {experiment_id} is rejected (--why); the record is for whoever reads it next")
    return write_annotation(home, "experiment", experiment_id, label=decision, note=why, author=author, source="review",
                            experiment_id=experiment_id)


@dataclass
class ReviewItem:
    """One keep, with everything a reviewer needs to judge it."""

    row: ExperimentRow
    reason: str
    alarms: list[str]
    interval: str
    digest: list[str]
    decision: AnnotationRow | None


def interval(row: ExperimentRow) -> str:
    """The metric with a rough interval: the measured noise of one run, shrunk by the runs it was measured on."""
    metric, noise = row.get("metric"), row.get("noise")
    runs = len(row.get("metric_runs") or []) or 1
    if metric is None:
        return "?"
    if not noise:
        return f"{metric:.6g} (noise not measured)"
    return f"{metric:.6g} ± {2 * noise / runs ** 0.5:.3g} (2 x noise / sqrt({runs}))"


def trace_digest(home: Path, trace_id: str | None, limit: int = 8) -> list[str]:
    """The experiment's trace in a few lines: its slowest spans and any errors."""
    if not trace_id:
        return []
    from .._query import database
    from ..store import sql_literal

    db = database(home)
    rel = db.sql(f"SELECT name, kind, status, round(duration_ms) AS ms, status_message FROM spans "
                 f"WHERE trace_id = {sql_literal(trace_id)} ORDER BY status = 'error' DESC, duration_ms DESC LIMIT {int(limit)}")
    out = []
    for name, kind, status, ms, message in rel.fetchall():
        out.append(f"{name} ({kind}) {ms:.0f} ms" + (f" ERROR {str(message or '')[:160]}" if status == "error" else ""))
    return out


def review_items(home: Path, rows: list[ExperimentRow]) -> list[ReviewItem]:
    keeps = keeps_in_order(rows)
    got = decisions(home, [r["experiment_id"] for r in keeps])
    return [ReviewItem(r, reason_of(r), list(r.get("alarms") or []), interval(r), trace_digest(home, r.get("trace_id")),
                       got.get(r["experiment_id"])) for r in keeps]


def _merge(base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """Three-way merge of one file (git merge-file); None on a conflict."""
    with tempfile.TemporaryDirectory(prefix="tracekit-merge-") as tmp:
        paths = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            p = Path(tmp) / name
            p.write_bytes(data)
            paths.append(str(p))
        proc = subprocess.run(["git", "merge-file", "-p", *paths], capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def rebuild_branch(home: Path, run_id: str, rows: list[ExperimentRow]) -> Chain:
    """Rebuild the run's branch from its baseline with every keep not rejected; move the branch there.

    Refused while a loop works on the run (it moves the branch itself)."""
    from ._gitrepo import GitRepo
    from ._session import loop_pid

    run_dir = Path(home) / "optimizer" / run_id
    pid = loop_pid(run_dir)
    if pid is not None:
        raise OptimizerError(f"a loop is working on run {run_id!r} (pid {pid}); stop it first (`tracekit optimize stop`), "
                             "then review")
    meta = json.loads((run_dir / "run.json").read_text())
    repo = GitRepo(Path(meta["git_dir"]))
    branch = meta["branch"] if str(meta["branch"]).startswith("refs/") else f"refs/heads/{meta['branch']}"
    keeps = keeps_in_order(rows)
    got = decisions(home, [r["experiment_id"] for r in keeps])
    rejected = [r["experiment_id"] for r in keeps if (d := got.get(r["experiment_id"])) and d.get("label") == "reject"]
    chain = Chain(meta["baseline_commit"], rejected=rejected)
    original_parent = chain.baseline_commit
    unchanged = True  # the chain so far is the original branch
    for r in keeps:
        eid, commit = r["experiment_id"], r.get("candidate_commit")
        if not commit:
            raise OptimizerError(f"keep {eid} has no candidate_commit; the ledger was changed by hand")
        if eid in rejected:
            unchanged = False
            original_parent = commit
            continue
        if unchanged:
            chain.links.append(ChainLink(eid, commit))
            original_parent = commit
            continue
        files = {}
        ok = True
        for rel in r.get("files_changed") or []:
            base = repo.read(original_parent, rel) or b""
            theirs = repo.read(commit, rel) or b""
            ours = repo.read(chain.head, rel) or b""
            merged = _merge(base, ours, theirs)
            if merged is None:
                ok = False
                break
            files[rel] = merged
        original_parent = commit
        if not ok:
            chain.dropped.append(eid)
            continue
        new = repo.commit(files, parent=chain.head, message=f"tracekit: {eid} rebased after review of run {run_id}")
        chain.links.append(ChainLink(eid, new, rebased=True))
        repo.set_ref(f"refs/tracekit/{run_id}/{eid}-rebased", new)
    repo.set_ref(branch, chain.head)
    chain.updated_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_file(chain_path(home, run_id), chain.to_json())
    return chain


def effective_keeps(rows: list[ExperimentRow], chain: Chain | None) -> list[tuple[ExperimentRow, str]]:
    """The keeps on the run's branch, in order, with their commits: after a review, its chain and then
    the keeps decided since; without one, every keep."""
    keeps = keeps_in_order(rows)
    if chain is None:
        return [(r, str(r.get("candidate_commit") or "")) for r in keeps]
    by_id = {r["experiment_id"]: r for r in keeps}
    out = [(by_id[link.experiment_id], link.commit) for link in chain.links if link.experiment_id in by_id]
    seen = {link.experiment_id for link in chain.links} | set(chain.rejected) | set(chain.dropped)
    for r in keeps:
        if r["experiment_id"] not in seen and str(r.get("finished_at") or "") > chain.updated_at.replace("T", " ").rstrip("Z"):
            out.append((r, str(r.get("candidate_commit") or "")))
    return out
