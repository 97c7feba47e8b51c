"""The `command` proposer: any coding-agent CLI edits a scratch copy of the target in place.

The loop writes the full context to a read-only folder (prompt.md, history.tsv, every past
experiment's diff, logs, metric curves and spans) and the proposer runs the command with the
copy as its working directory. Placeholders in the command: `{prompt_file}`, `{context_dir}`,
`{workspace}`, `{rationale_file}`; the prompt also arrives on stdin and the same paths in the
environment (TRACEKIT_PROMPT_FILE, TRACEKIT_CONTEXT_DIR, TRACEKIT_WORKSPACE,
TRACEKIT_RATIONALE_FILE). Afterwards tracekit keeps the changes to the editable files only
(others are dropped and listed), reads the rationale from the rationale file (else the last line of
stdout) and the cost from a JSON stdout with `total_cost_usd` / `usage` (as `claude -p
--output-format json` prints).

    tracekit optimize . --proposer command \\
        --proposer-cmd 'claude -p "$(cat {prompt_file})" --output-format json --max-budget-usd 0.5'
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from .._errors import OptimizerError
from .._util.jsonutil import loads_limited
from ._proposer import Cost, Proposal, ProposalContext
from ._safefs import Dir, UnsafePath, copy_tree
from ._validate import InvalidProposal


def copy_target(root: Path, dest: Path, exclude: tuple[str, ...], sealed: tuple[str, ...]) -> None:
    """Copy the target folder to the new folder `dest`, skipping names matching `exclude` (globs) and the
    `sealed` holdout files (paths); links stay links. Every copy of a target goes through here."""
    copy_tree(root, dest, exclude, skip=sealed)


def _snapshot(folder: Path, exclude: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not any(fnmatch(d, p) for p in exclude)]
        for n in filenames:
            p = Path(dirpath) / n
            try:
                st = p.lstat()
            except OSError:
                continue
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def parse_cost(stdout: str) -> Cost:
    """Cost from a JSON object on stdout (claude -p --output-format json), else zero with unknown USD."""
    text = stdout.strip()
    start = text.rfind("\n{")
    candidates = [text] + ([text[start + 1:]] if start >= 0 else [])
    for c in candidates:
        try:
            data = loads_limited(c)
        except ValueError:
            continue
        if isinstance(data, dict):
            usage = data.get("usage") or {}
            usd = data.get("total_cost_usd", data.get("cost_usd"))
            return Cost(int(usage.get("input_tokens", 0) or 0), int(usage.get("output_tokens", 0) or 0),
                        int(usage.get("cache_read_input_tokens", 0) or 0),
                        int(usage.get("cache_creation_input_tokens", 0) or 0),
                        float(usd) if usd is not None else None)
    return Cost(usd=None)


def _read_editable(work: Path, editable: tuple[str, ...], limit: int) -> dict[str, str]:
    """The editable files the command left, read without following links; a link or an oversize file is invalid."""
    files = {}
    try:
        d = Dir.open(work)
    except (OSError, UnsafePath) as exc:
        raise InvalidProposal("command", f"the proposer removed or replaced its workspace {work} ({exc}); edit the files "
                                         "in it instead") from None
    with d:
        for rel in editable:
            try:
                data = d.read(rel, limit)
            except FileNotFoundError:
                continue  # deleted: the parent's version stays
            except (UnsafePath, NotADirectoryError) as exc:
                raise InvalidProposal("symlink", f"the proposer left {rel} as a symbolic link or a special file ({exc}); "
                                                 "edit the file in place instead") from None
            if len(data) > limit:
                raise InvalidProposal("size", f"the proposer left {rel} over {limit} bytes (max_file_bytes); propose a "
                                              "smaller file")
            files[rel] = data.decode("utf-8", errors="replace")
    return files


def _read_rationale(scratch: Path, name: str) -> str:
    """The rationale file's start ('' when absent, a link or not a file: then stdout's last line is used)."""
    try:
        with Dir.open(scratch) as d:
            return d.read(name, 64 * 1024)[: 64 * 1024].decode("utf-8", errors="replace").strip()
    except (OSError, UnsafePath):
        return ""


class CommandProposer:
    """Runs a CLI on a scratch copy of the target; keeps the diff of the editable files."""

    name = "command"
    needs_context_dir = True

    def __init__(self, command: str | list[str], timeout_s: float = 900.0, env: dict[str, str] | None = None) -> None:
        if not command:
            raise OptimizerError("the command proposer needs a command: --proposer-cmd 'claude -p ...' or "
                                 "[proposer] command = \"...\" in tracekit.toml")
        self.command = command
        self.timeout_s = timeout_s
        self.env = env or {}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "CommandProposer":
        return cls(command=options.get("command") or "", timeout_s=float(options.get("timeout_s", 900.0)),
                   env={str(k): str(v) for k, v in (options.get("env") or {}).items()})

    def _argv(self, paths: dict[str, str]) -> tuple[list[str] | str, bool]:
        if isinstance(self.command, list):
            return [a.format(**paths) for a in self.command], False
        quoted = {k: shlex.quote(v) for k, v in paths.items()}
        return self.command.format(**quoted), True

    def propose(self, ctx: ProposalContext) -> Proposal:
        target = ctx.target
        work = ctx.scratch / "workspace"
        copy_target(target.root, work, target.exclude, target.sealed)
        with Dir.open(work) as d:
            for rel, text in ctx.files.items():
                d.write(rel, text)
        before = _snapshot(work, target.exclude)
        prompt_file = ctx.context_dir / "prompt.md"
        rationale_file = ctx.scratch / "rationale.txt"
        paths = {"prompt_file": str(prompt_file), "context_dir": str(ctx.context_dir), "workspace": str(work),
                 "rationale_file": str(rationale_file)}
        argv, shell = self._argv(paths)
        env = {k: v for k, v in os.environ.items() if k not in ("TRACEPARENT", "TRACESTATE")}
        env.update(self.env)
        env.update({"TRACEKIT_PROMPT_FILE": paths["prompt_file"], "TRACEKIT_CONTEXT_DIR": paths["context_dir"],
                    "TRACEKIT_WORKSPACE": paths["workspace"], "TRACEKIT_RATIONALE_FILE": paths["rationale_file"]})
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, shell=shell, cwd=work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, text=True, errors="replace")
        try:
            out, err = proc.communicate(ctx.full_prompt, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise InvalidProposal("command", f"the proposer command ran past its {self.timeout_s:g} s timeout and was "
                                             f"killed; stderr tail: {err[-500:]}") from None
        except BrokenPipeError:
            out, err = proc.communicate()
        raw = (out or "") + (("\n[stderr]\n" + err) if err else "")
        if proc.returncode != 0:
            raise InvalidProposal("command", f"the proposer command exited with code {proc.returncode} after "
                                             f"{time.perf_counter() - t0:.1f} s; stderr tail: {(err or '')[-800:]}")
        after = _snapshot(work, target.exclude)
        touched = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        ignored = [t for t in touched if t not in target.editable]
        files = _read_editable(work, target.editable, target.max_file_bytes)
        rationale = _read_rationale(ctx.scratch, rationale_file.name)
        if not rationale:
            lines = [ln.strip() for ln in (out or "").splitlines() if ln.strip()]
            if lines and not lines[-1].startswith("{"):
                rationale = lines[-1]
            else:
                try:
                    rationale = str(loads_limited(out).get("result", ""))[-400:]
                except (ValueError, AttributeError):
                    rationale = ""
        return Proposal(files=files, rationale=" ".join(rationale.split())[:600], cost=parse_cost(out or ""),
                        raw_output=raw[-20000:], meta={"ignored_changes": ignored, "exit_code": proc.returncode})
