"""Command tasks: the thing under test is a program, run in the sandbox once per case.

    from tracekit.evals import Task, sandboxed, scorers

    Task("cases.jsonl", solver=sandboxed(["python", "solve.py"], workspace="agent/", budget_s=60),
         scorers=[scorers.exact()])

Per case the command runs in a fresh copy of `workspace` (see `tracekit.sandbox`), with
`$TRACEKIT_EVAL_INPUT` naming a read-only JSON file `{"id", "input", "metadata"}` (never the
target) and `$TRACEKIT_EVAL_CASE_ID` the case's id; `{input}` and `{id}` in the argv are replaced
by the input (when it is a string) and the id. The output is the command's stdout, stripped
(`output="json"` parses it, `output="file:answer.txt"` reads a file the command wrote in its
workspace: a regular file reached without following any symlink, at most `output_bytes`). A non-zero exit, out-of-memory or output-limit stop is a crashed case whose error
carries the tail of stderr; running past the budget is a timeout. The sandbox's `run` span and any
span the command emits nest under the case's `eval` span.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import EvalError
from .._util.jsonutil import JSONLimitError, loads_limited
from .._util.saferead import UnsafePath, read_below
from ._retry import CaseTimeout
from ._sample import Sample

STDERR_TAIL = 1500


class CommandFailed(Exception):
    """The command under test crashed (non-zero exit, OOM, output limit, killed)."""


def _apply(arg: str, sample: Sample) -> str:
    if "{input}" in arg:
        if not isinstance(sample.input, str):
            raise EvalError(f"sandboxed: '{{input}}' in the command needs a string input; case {sample.id!r} has "
                            f"{type(sample.input).__name__} (read $TRACEKIT_EVAL_INPUT instead)")
        arg = arg.replace("{input}", sample.input)
    return arg.replace("{id}", sample.id)


class SandboxedCommand:
    """An async solver running `command` in the sandbox for each case (see the module docstring)."""

    wants_sample = True

    def __init__(self, command: Sequence[str] | str, *, workspace: str | Path | None = None, budget_s: float = 60.0,
                 env: Mapping[str, str] | None = None, output: str = "stdout", keep_runs: bool = False,
                 **spec_options: Any) -> None:
        if isinstance(command, str):
            if not command.strip():
                raise EvalError("sandboxed(command): the command is empty")
        elif not command or not all(isinstance(a, str) for a in command):
            raise EvalError(f"sandboxed(command={command!r}): give an argv list of strings or a shell string")
        if output not in ("stdout", "json") and not output.startswith("file:"):
            raise EvalError(f"sandboxed(output={output!r}): use 'stdout', 'json' or 'file:RELATIVE_PATH'")
        if workspace is not None and not Path(workspace).is_dir():
            raise EvalError(f"sandboxed(workspace={str(workspace)!r}): not a folder")
        from ..sandbox import RunSpec

        given = set(spec_options)
        bad = (given - set(RunSpec.__dataclass_fields__)) | (given & {"command", "workspace", "budget_s", "env", "run_dir"})
        if bad:
            raise EvalError(f"sandboxed(): unknown or reserved options {sorted(bad)}; see tracekit.sandbox.RunSpec")
        self.command = command
        self.workspace = Path(workspace).resolve() if workspace is not None else None
        self.budget_s = budget_s
        self.env = dict(env or {})
        self.output = output
        self.keep_runs = keep_runs
        self.spec_options = spec_options
        self.name = "sandboxed"
        self.__name__ = "sandboxed"

    def _spec(self, sample: Sample, case_dir: Path) -> Any:
        from .._config import _experiment, get_settings
        from ..sandbox import RunSpec

        (case_dir / "input.json").write_text(json.dumps(
            {"id": sample.id, "input": sample.input, "metadata": sample.metadata}, default=str))
        case_dir.chmod(0o755)  # the run is an unprivileged uid (never root): it must be able to read its input
        (case_dir / "input.json").chmod(0o644)
        argv: Sequence[str] | str = (_apply(self.command, sample) if isinstance(self.command, str)
                                     else [_apply(a, sample) for a in self.command])
        env = {**self.env, "TRACEKIT_EVAL_INPUT": str(case_dir / "input.json"), "TRACEKIT_EVAL_CASE_ID": sample.id}
        exp = _experiment.get() or get_settings().experiment_id
        ro = [*self.spec_options.get("ro_paths", ()), str(case_dir)]
        opts = {k: v for k, v in self.spec_options.items() if k != "ro_paths"}
        opts.setdefault("name", f"eval-case {sample.id}")
        if exp and "experiment_id" not in opts:
            opts["experiment_id"] = exp
        return RunSpec(argv, workspace=self.workspace, budget_s=self.budget_s, env=env, ro_paths=ro,
                       run_dir=case_dir / "run", **opts)

    def _read_output(self, result: Any) -> Any:
        """The case's output: stdout, stdout parsed as JSON, or a file of the run's workspace (hostile input all)."""
        if self.output == "stdout":
            return result.stdout.text().strip()
        if self.output == "json":
            text = result.stdout.text().strip()
            try:
                return loads_limited(text)
            except JSONLimitError as exc:
                raise CommandFailed(f"stdout JSON refused: {exc}") from None
            except ValueError as exc:
                raise CommandFailed(f"stdout is not JSON ({exc}): {text[-300:]!r}") from None
        from ..sandbox import RunSpec

        rel = self.output.removeprefix("file:")
        cap = int(self.spec_options.get("output_bytes", RunSpec.output_bytes))  # the cap stdout has too
        try:  # no symlink followed (not even inside the workspace), no FIFO or device opened
            data = read_below(result.workspace, rel, cap, label="workspace")
        except FileNotFoundError:
            raise CommandFailed(f"the command did not write {rel} in its workspace") from None
        except (OSError, UnsafePath) as exc:
            raise CommandFailed(f"output file {rel} refused: {exc}") from None
        return data.decode(errors="replace").strip()

    def _finish(self, result: Any) -> Any:
        if result.status == "timeout":
            raise CaseTimeout(f"the command exceeded its budget of {self.budget_s:g}s")
        if result.status not in ("ok", "no_metric"):
            why = {"crash": f"exited with code {result.exit_code}" if result.signal is None else f"died of signal {result.signal}",
                   "oom": "ran out of memory", "output_limit": "wrote more output than allowed",
                   "killed": "was killed"}.get(result.status, result.status)
            tail = result.stderr.text()[-STDERR_TAIL:].strip()
            raise CommandFailed(f"the command {why}" + (f"; stderr ends with:\n{tail}" if tail else ""))
        return self._read_output(result)

    async def __call__(self, sample: Sample) -> Any:
        from ..sandbox import run
        from ._threads import in_thread

        case_dir = Path(tempfile.mkdtemp(prefix="tracekit-eval-case-"))
        cancel = threading.Event()

        def work(spec: Any) -> Any:  # on its own thread, which also cleans up (even after a cancel)
            try:
                return self._finish(run(spec, cancel=cancel))
            finally:
                if not self.keep_runs:
                    shutil.rmtree(case_dir, ignore_errors=True)

        try:
            spec = self._spec(sample, case_dir)
        except BaseException:
            shutil.rmtree(case_dir, ignore_errors=True)
            raise
        try:
            return await in_thread(work, spec)
        except asyncio.CancelledError:
            cancel.set()  # the case was cut short (time limit, Ctrl-C): stop the process tree too
            raise

def sandboxed(command: Sequence[str] | str, *, workspace: str | Path | None = None, budget_s: float = 60.0,
              env: Mapping[str, str] | None = None, output: str = "stdout", keep_runs: bool = False,
              **spec_options: Any) -> SandboxedCommand:
    """A solver that runs `command` in the sandbox per case; other options go to `RunSpec`."""
    return SandboxedCommand(command, workspace=workspace, budget_s=budget_s, env=env, output=output,
                            keep_runs=keep_runs, **spec_options)
