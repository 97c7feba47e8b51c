"""Running one page of the docs: a folder that looks like a clone, the reader's environment, the runner.

The page runs in a fresh folder holding a copy of examples/ and a link to the suite's .venv (what a
clone has), with TRACEKIT_HOME at `./.tracekit` there, HOME and the temp folder inside it, PATH
starting with the venv's bin, ANTHROPIC_BASE_URL (and examples/agent-harness's model proxy's
upstream, TRACEKIT_PROXY_UPSTREAM) at the suite's local Messages API server, a git identity, and
nothing of the developer's TRACEKIT_*, OTEL_* or ANTHROPIC_* settings. That server answers as a model
would on the bundled examples (tests/_support/docs_model.py). The copy of examples/tinylm trains a fixed 30 steps per run (TINYLM_STEPS in its tracekit.toml) instead of 40 s, so a page that
optimizes it takes seconds per experiment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from . import EXAMPLES
from .docblocks import Plan, plan
from .docs_model import docs_model
from .messages_server import MessagesServer

RUNNER = Path(__file__).resolve().parent / "docs_page.py"
DROPPED_ENV = ("TRACEKIT_", "OTEL_", "ANTHROPIC_", "TRACEPARENT", "VIRTUAL_ENV", "PYTHON")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def page_folder(root: Path) -> Path:
    """A folder that looks like a clone to the page: examples/ (without stores), .venv linked."""
    shutil.copytree(EXAMPLES, root / "examples", ignore=shutil.ignore_patterns(".tracekit", "__pycache__"))
    toml = root / "examples" / "tinylm" / "tracekit.toml"
    toml.write_text(toml.read_text().replace("[target.env]\n", '[target.env]\nTINYLM_STEPS = "30"\n'))
    (root / ".venv").symlink_to(Path(sys.executable).parents[1])
    (root / "home").mkdir()
    (root / "tmp").mkdir()
    return root


def page_env(root: Path, plan_: Plan, port: int, messages_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_ENV)}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", HOME=str(root / "home"),
               TMPDIR=str(root / "tmp"), TRACEKIT_HOME=str(root / ".tracekit"), TRACEKIT_PORT=str(port),
               ANTHROPIC_BASE_URL=messages_url, TRACEKIT_PROXY_UPSTREAM=messages_url, NO_COLOR="1")
    for who in ("AUTHOR", "COMMITTER"):  # a reader's git knows who they are
        env.update({f"GIT_{who}_NAME": "Docs Reader", f"GIT_{who}_EMAIL": "reader@localhost"})
    if plan_.needs_claude:
        env["ANTHROPIC_API_KEY"] = "sk-docs-test-placeholder"
    return env


def run_page(page: Path, root: Path, text: str | None = None, timeout: float = 540) -> tuple[Plan, list[dict[str, object]], int]:
    """Plan the page, run it in `root`; the plan, the runner's report and its exit status."""
    port = _free_port()
    p = plan(page, port, text)
    if p.problems:
        return p, [], 1
    page_folder(root)
    logs = root.parent / f"{root.name}-logs"
    logs.mkdir()
    (logs / "plan.json").write_text(json.dumps({"steps": p.steps}))
    report = logs / "report.json"
    with MessagesServer(docs_model) as server, open(logs / "stdout.log", "w") as out:
        env = page_env(root, p, port, server.url)
        proc = subprocess.Popen([sys.executable, str(RUNNER), str(logs / "plan.json"), str(report)], cwd=root, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the page's own process group: whatever it left running
            except ProcessLookupError:
                pass
            proc.wait()
    steps = json.loads(report.read_text()) if report.is_file() else []
    return p, steps, rc


def explain(p: Plan, steps: list[dict[str, object]], rc: int) -> str:
    if p.problems:
        return "blocks that cannot run:\n" + "\n".join(p.problems)
    if not steps:
        return f"the page runner exited {rc} before its first step"
    last = steps[-1]
    return (f"{last['where']} ({last['kind']}) failed, exit {last['rc']}:\n{last['text']}\n--- output (tail) ---\n"
            f"{last['output']}\n--- {len(steps) - 1} step(s) before it passed")
