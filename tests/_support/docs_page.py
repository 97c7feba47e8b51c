"""Runs one page's plan (tests/_support/docblocks.py) as a newcomer would: `python docs_page.py PLAN REPORT`.

This process is the page's Python interpreter: its blocks run here, in order, in one namespace, so a
later block sees what an earlier one defined (as in a notebook or a REPL). Next to it lives one bash,
fed the page's shell lines one at a time, so `cd`, `export` and variables carry over as they would in
the reader's terminal. Both start in the page's folder with the environment the test gave. The test
starts this process in a session of its own and, once it has ended, kills what is left in its process
group (a proxy a page started with `&`, a collector of a page that failed half-way).

Standard library only, and nothing imported before the first block but what is needed here: the page
starts from a fresh interpreter, not from the test's.

After each Python block that imported tracekit, `tracekit.flush()` runs: a reader who types the next
shell command has waited longer than the exporter's 0.5 s batch delay, a test has not. The report
(one entry per step: status, seconds, output tail) is rewritten after every step, so a page that
hangs still says how far it got.
"""

from __future__ import annotations

import builtins
import json
import os
import select
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

STEP_TIMEOUT_S = float(os.environ.get("DOCS_STEP_TIMEOUT_S", "300"))
TAIL = 4000


class Shell:
    """One bash for the page; each command's output goes to its own file, its exit status down a pipe."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.status_r, status_w = os.pipe()
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, pass_fds=(status_w,), text=True)
        os.close(status_w)
        self.fd = status_w
        self.n = 0
        # curl fails on an HTTP error status (4xx/5xx) the way a reader would notice it, and never waits forever.
        self.send("curl() { command curl --fail-with-body --show-error --max-time 60 \"$@\"; }")

    def send(self, script: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(script + "\n")
        self.proc.stdin.flush()

    def run(self, cmd: str, timeout: float = STEP_TIMEOUT_S) -> tuple[int, str]:
        self.n += 1
        out = self.logs / f"shell-{self.n:03d}.log"
        self.send(f"{{ {cmd}\n}} >{out} 2>&1 </dev/null\necho $? >&{self.fd}")
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.status_r], [], [], max(0.0, left))
            if not ready:
                return -1, _tail(out) + f"\n[no exit after {timeout:.0f} s]"
            chunk = os.read(self.status_r, 64)
            if not chunk:
                return -1, _tail(out) + "\n[the page's bash exited]"
            line += chunk
        return int(line.strip() or b"-1"), _tail(out)

    def close(self) -> None:
        try:
            self.send('[ -n "${DOCS_SERVE_PID:-}" ] && kill -TERM "$DOCS_SERVE_PID" && wait "$DOCS_SERVE_PID"; exit 0')
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-TAIL:].decode("utf-8", "replace")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def serve(shell: Shell, cmd: str, port: int) -> tuple[int, str]:
    """A `tracekit serve` line: the page's previous collector stops, this one starts in the background."""
    shell.run('[ -n "${DOCS_SERVE_PID:-}" ] && kill -TERM "$DOCS_SERVE_PID" && wait "$DOCS_SERVE_PID"; true')
    log = shell.logs / f"serve-{shell.n:03d}.log"
    rc, _ = shell.run(f"( exec {cmd}\n) >{log} 2>&1 </dev/null &\nDOCS_SERVE_PID=$!")  # a newline ends the line's comment
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _listening(port):
            return 0, _tail(log)
        alive, _ = shell.run('kill -0 "$DOCS_SERVE_PID" 2>/dev/null')
        if alive != 0:
            return 1, _tail(log) + "\n[the collector exited before it listened]"
        time.sleep(0.2)
    return 1, _tail(log) + f"\n[nothing listened on 127.0.0.1:{port} within 60 s]"


def python_block(ns: dict[str, object], step: dict[str, str], logs: Path, n: int) -> tuple[int, str]:
    out = logs / f"python-{n:03d}.log"
    with open(out, "w") as f:
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = f
        try:
            exec(compile(step["text"], step["where"], "exec"), ns)
            if "tracekit" in sys.modules:
                sys.modules["tracekit"].flush()
            rc = 0
        except BaseException:  # the block's own exception, SystemExit included, is the failure to report
            traceback.print_exc(file=f)
            rc = 1
        finally:
            f.flush()
            sys.stdout, sys.stderr = old
    return rc, _tail(out)


def sql(shell: Shell, step: dict[str, str], logs: Path, n: int) -> tuple[int, str, int | None]:
    query = logs / f"sql-{n:03d}.sql"
    query.write_text(step["text"])
    answer = logs / f"sql-{n:03d}.json"  # stdout alone: warnings (an empty store, say) go to stderr
    rc, out = shell.run(f"(set -o pipefail; tracekit sql{step['home']} --format json - <{query} | tee {answer})")
    rows = None
    if rc == 0:
        try:
            rows = len(json.loads(answer.read_text()))
        except ValueError:
            return 1, out + "\n[the answer is not the JSON array `--format json` promises]", None
    return rc, out, rows


def main(plan_path: str, report_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    logs = Path(report_path).parent
    shell = Shell(logs)
    ns: dict[str, object] = {"__name__": "__main__", "__builtins__": builtins}
    report: list[dict[str, object]] = []
    try:
        for n, step in enumerate(plan["steps"], 1):
            t0 = time.monotonic()
            rows = None
            kind = step["kind"]
            if kind == "file":
                target = Path(step["path"])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(step["text"])
                rc, out = 0, ""
            elif kind == "python":
                rc, out = python_block(ns, step, logs, n)
            elif kind == "serve":
                rc, out = serve(shell, step["text"], step["port"])
            elif kind == "sql":
                rc, out, rows = sql(shell, step, logs, n)
            else:
                rc, out = shell.run(step["text"])
            report.append({"where": step["where"], "kind": kind, "text": step["text"], "rc": rc, "rows": rows,
                           "seconds": round(time.monotonic() - t0, 2), "output": out})
            Path(report_path).write_text(json.dumps(report, indent=1))
            if rc != 0:
                return 1
        return 0
    finally:
        shell.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
