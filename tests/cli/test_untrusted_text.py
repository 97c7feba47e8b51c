"""The terminal never obeys a run: hostile text in the store, a run or a proposal reaches the CLI's output inert.

Every command runs as a real `python -m tracekit` subprocess (stdout is a pipe, as when piped to a
pager or a log, and once with colour forced, as on a terminal), over a real store, sandbox, eval
runner and optimizer fed one hostile string: Rich markup (a stray closing tag used to crash the
CLI), `:emoji:` codes, SGR, OSC 52 (clipboard), OSC 8 (hyperlink), OSC 0 (title), 8-bit CSI/OSC/ST,
BEL, backspaces, a carriage return, bidi overrides and isolates, NUL and DEL. The output must hold
none of those characters raw, show the markup literally, and the files for humans (summary.md,
results.tsv) must be free of them too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tracekit
from tracekit._util.termtext import BIDI, clean, json_text, markup

from tests._support.optimizer import make_target

MARKUP = "[/red][bold]B[/bold][link=http://127.0.0.1:9/x]L[/link]"
HOSTILE = (MARKUP + " :warning: \x1b[31mR\x1b[0m \x1b]52;c;ZXZpbA==\x07 \x1b]8;;http://127.0.0.1:9/\x1b\\H\x1b]8;;\x1b\\ "
           "\x1b]0;TITLE\x07 \x9b2J \x9d8;;x\x9c bell\x07 bs\x08\x08 a\rb \u202eRLO\u202c \u2066I\u2069 \x7f")
ARG_SAFE = HOSTILE  # no NUL: command-line arguments and file names cannot carry one
STORED = HOSTILE + " nul\x00"
UNSAFE = {*range(0x20), 0x7F, *range(0x80, 0xA0), *BIDI, 0x2028, 0x2029} - {0x09, 0x0A}
RICH_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def assert_inert(text: str, *, literal: bool = True) -> None:
    bad = sorted({f"U+{ord(c):04X}" for c in text if ord(c) in UNSAFE})
    assert not bad, f"raw control characters reached the output: {bad}\n{text[:3000]!r}"
    if literal:
        assert MARKUP.split(" ")[0] in text, f"markup was interpreted or lost:\n{text[:3000]}"
        assert ":warning:" in text and "␛" in text


def cli(*args: str, home: Path, code: int | None = 0, color: bool = False, cwd: Path | None = None) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE")}
    env.update({"TRACEKIT_HOME": str(home), "COLUMNS": "400", "PYTHONIOENCODING": "utf-8"})
    if color:
        env.update({"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    proc = subprocess.run([sys.executable, "-m", "tracekit", *args], capture_output=True, env=env, cwd=cwd, timeout=300)
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    assert "Traceback" not in err, err
    if code is not None:
        assert proc.returncode == code, (proc.returncode, out, err)
    return out, err


def test_sanitiser_replaces_every_controlling_character_and_json_stays_lossless() -> None:
    text = clean(STORED)
    assert not [c for c in text if ord(c) in UNSAFE]
    assert "␛[31mR" in text and "⟨U+009B⟩2J" in text and "␇" in text and "␈" in text and "a␍b" in text
    assert "⟨U+202E⟩RLO" in text and "␀" in text and "␡" in text
    assert clean("line 1\r\nline 2\tx") == "line 1\nline 2\tx" and clean("a\nb", newlines=False) == "a␊b"
    escaped = markup(MARKUP)
    from rich.text import Text

    assert Text.from_markup(escaped).plain == MARKUP  # Rich prints the escaped form literally
    dumped = json_text({"k": STORED + "\ud800"})
    assert not [c for c in dumped if ord(c) in UNSAFE or 0xD800 <= ord(c) < 0xE000]
    assert json.loads(dumped) == {"k": STORED + "\ud800"}


@pytest.fixture
def hostile_store(home: Path) -> tuple[Path, str]:
    """Spans whose name, input, output, attributes, event and error are the hostile text (any client can send them)."""
    with pytest.raises(ValueError):
        with tracekit.span(STORED, kind="tool") as s:
            s.set_input({"q": STORED})
            s.set_output(STORED)
            s.set_attribute("note", STORED)
            s.add_event(STORED, detail=STORED)
            tid = s.trace_id
            raise ValueError(STORED)
    tracekit.flush()
    return home, tid


def test_sql_and_traces_print_stored_span_text_inert(hostile_store: tuple[Path, str]) -> None:
    home, tid = hostile_store
    sql = "SELECT name, input, output, attributes, status_message FROM spans"
    out, _ = cli("sql", sql, home=home)
    assert_inert(out)
    for fmt in ("json", "jsonl"):
        out, _ = cli("sql", "--format", fmt, sql, home=home)
        assert_inert(out, literal=False)
        first = json.loads(out.splitlines()[0])
        assert (first[0] if fmt == "json" else first)["name"] == STORED  # lossless: escapes, not placeholders
    out, _ = cli("sql", "--format", "csv", sql, home=home)
    assert_inert(out)
    for args in (("traces", "list"), ("traces", "show", tid), ("traces", "show", tid, "--format", "json")):
        out, _ = cli(*args, home=home)
        assert_inert(out, literal=args[-1] != "json")
    # on a terminal: the only escape sequences are Rich's own styling, never an OSC (clipboard, link, title)
    for args in (("sql", sql), ("traces", "show", tid), ("traces", "list")):
        out, _ = cli(*args, home=home, color=True)
        assert RICH_CSI.search(out), "colour was not forced"
        assert_inert(RICH_CSI.sub("", out))


def test_error_messages_quoting_bad_input_are_inert(home: Path, tmp_path: Path) -> None:
    _, err = cli("sql", f"SELECT '{ARG_SAFE}' FROM no_such_table", home=home, code=2)
    assert "error:" in err
    assert_inert(err, literal=False)
    _, err = cli("traces", "list", f"--limit={ARG_SAFE}", home=home, code=2)
    assert_inert(err, literal=False)
    _, err = cli(f"no-such-command{ARG_SAFE}", home=home, code=2)
    assert_inert(err, literal=False)
    bad = tmp_path / "traj [bold] \x1b]0;T\x07.json"  # a file name cannot hold '/': no closing tag here
    bad.write_text("{not json " + ARG_SAFE)
    _, err = cli("traces", "import-atif", str(bad), home=home, code=2)
    assert "skipped" in err and "traj [bold] ␛]0;T␇.json" in err
    assert_inert(err, literal=False)


def test_store_info_with_a_hostile_home_folder_name(home: Path, tmp_path: Path) -> None:
    hostile_home = tmp_path / "home [bold]B [red]R :warning: \x1b]0;T\x07 \u202e"
    tracekit.configure(home=hostile_home)
    try:
        with tracekit.span("ok"):
            pass
        tracekit.flush()
    finally:
        tracekit.configure(home=home)
    out, _ = cli("store", "info", home=hostile_home)
    assert "spans" in out and "home [bold]B [red]R :warning: ␛]0;T␇ ⟨U+202E⟩" in out
    assert_inert(out, literal=False)


def test_transcript_of_an_imported_trajectory_is_inert(home: Path, tmp_path: Path) -> None:
    doc = {
        "schema_version": "ATIF-v1.4", "session_id": "s1",
        "agent": {"name": STORED, "version": "1", "model_name": STORED},
        "steps": [
            {"step_id": 1, "source": "system", "message": STORED},
            {"step_id": 2, "source": "user", "message": STORED},
            {"step_id": 3, "source": "agent", "message": STORED, "reasoning_content": STORED,
             "tool_calls": [{"tool_call_id": "c1", "function_name": STORED, "arguments": {"cmd": STORED}}],
             "observation": {"results": [{"source_call_id": "c1", "content": STORED}]}},
        ],
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    out, _ = cli("traces", "import-atif", str(path), home=home)
    tid = out.split("as trace ")[1].split()[0]
    out, _ = cli("traces", "show", tid, "--transcript", home=home)
    assert_inert(out)
    assert out.count(MARKUP.split(" ")[0]) >= 5  # system, user, message, reasoning, tool name / arguments / result
    out, _ = cli("traces", "show", tid, "--transcript", home=home, color=True)
    assert_inert(RICH_CSI.sub("", out))
    out, _ = cli("traces", "export-atif", tid, home=home)
    assert_inert(out, literal=False)
    assert json.loads(out)["steps"][0]["message"] == STORED


EVAL_TASK = '''
from tracekit.evals import Sample, Score, Task, scorers

HOSTILE = {hostile!r}

def solver(x):
    if x == 3:
        raise RuntimeError(HOSTILE)
    return HOSTILE

def judge(output, target):
    return Score(0.0, explanation=HOSTILE)

hostile = Task([Sample(i, HOSTILE, id=f"case{{i}}") for i in range(1, 4)], solver=solver,
               scorers=[scorers.python(judge, name=HOSTILE[:40])], name="hostile")
'''


def test_eval_run_show_list_compare_print_case_text_inert(home: Path, tmp_path: Path) -> None:
    task = tmp_path / "evals_hostile.py"
    task.write_text(EVAL_TASK.format(hostile=STORED))
    for _ in range(2):
        out, err = cli("eval", "run", f"{task}:hostile", home=home, code=0)
        assert_inert(out, literal=False)
        assert_inert(err, literal=False)
        assert "accuracy" in out and MARKUP.split(" ")[0][:40] in out
    for args in (("eval", "show", "latest", "--width", "200"), ("eval", "list"), ("eval", "show", "latest", "--format", "json")):
        out, _ = cli(*args, home=home)
        assert_inert(out, literal=args[1] == "show" and "json" not in args)
    runs = [r["run_id"] for r in json.loads(cli("eval", "list", "--format", "json", home=home)[0])]
    out, _ = cli("eval", "compare", runs[1], runs[0], home=home)
    assert_inert(out, literal=False)


def test_sandbox_run_with_a_markup_metric_name_and_escape_output(home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "run.py").write_text(textwrap.dedent(f'''\
        import json, os, sys
        H = {STORED!r}
        print(H)
        print(H, file=sys.stderr)
        with open(os.environ["TRACEKIT_RESULT"], "w") as f:
            json.dump({{"metrics": {{H[:150]: 1.0, "[/red]loss": 2.0}}}}, f)
    '''))
    out, err = cli("sandbox", "run", "--budget", "30", "--memory", "512M", "--workspace", str(ws), "--run-dir",
                   str(tmp_path / "r1"), "--", "python", "run.py", home=home)
    assert "metrics:" in out and "[/red]loss=2" in out
    assert_inert(out)
    assert_inert(err, literal=False)
    out, _ = cli("sandbox", "run", "--json", "--workspace", str(ws), "--run-dir", str(tmp_path / "r2"), "--",
                 "python", "run.py", home=home)
    assert_inert(out, literal=False)
    assert ARG_SAFE in json.loads(out)["stdout"]["head"]  # the sandbox itself turns NUL into U+FFFD


HOSTILE_PROPOSER = textwrap.dedent('''\
    """Proposes WIDTH doubling with a hostile rationale; the third proposal makes the run crash with hostile stderr."""
    import csv, os, re, sys
    from pathlib import Path

    H = {hostile!r}
    rows = list(csv.DictReader(open(Path(os.environ["TRACEKIT_CONTEXT_DIR"]) / "history.tsv"), delimiter="\\t"))
    src = Path("train.py").read_text()
    if len(rows) < 3:
        width = int(re.search(r"WIDTH = (\\d+)", src).group(1))
        src = src.replace(f"WIDTH = {{width}}", f"WIDTH = {{width * 2}}")
    else:
        src = "import sys\\nH = " + repr(H) + "\\nsys.stderr.write(H)\\nsys.exit(3)\\n" + src
    Path("train.py").write_text(src)
    Path(os.environ["TRACEKIT_RATIONALE_FILE"]).write_text("tab\\there\\nnewline " + H)
''')


def test_optimize_live_plain_status_report_and_files_are_inert(tmp_path: Path) -> None:
    """Rationales (with a tab and a newline), a crash's stderr and errors: inert on screen, in summary.md and results.tsv.

    (Metric names with markup cannot reach `optimize`: the sandbox refuses them in the target; a run's own
    metric names are covered by the sandbox test above.)
    """
    root = make_target(tmp_path / "bowl")
    agent = tmp_path / "agent.py"
    agent.write_text(HOSTILE_PROPOSER.format(hostile=ARG_SAFE))
    home = root / ".tracekit"
    common = ("--proposer", "command", "--proposer-cmd", f"{sys.executable} {agent}")
    out, err = cli("optimize", str(root), "-n", "2", "--plain", *common, home=home)
    assert "stopped: 2 experiments done" in out
    assert_inert(out)
    assert_inert(err, literal=False)
    out, err = cli("optimize", str(root), "-n", "3", "--live", *common, home=home)
    assert "3 of 3 experiments done" in out and "main-0003 " in out and "crash" in out  # the whole run, resumes included
    assert_inert(out)
    for args in (("optimize", "status", str(root)), ("optimize", "report", str(root)), ("optimize", "status", str(root),
                                                                                          "--format", "json")):
        out, _ = cli(*args, home=home)
        assert_inert(out, literal=args[-1] != "json")
    run = home / "optimizer" / "main"
    summary = (run / "summary.md").read_text()
    assert "## Every decision, and why" in summary and MARKUP.split(" ")[0] in summary
    assert not [c for c in summary if ord(c) in UNSAFE | {0x09}]
    tsv = (run / "results.tsv").read_text().splitlines()
    assert len(tsv) == 5 and all(len(line.split("\t")) == 5 for line in tsv), tsv
    assert not [c for c in "".join(tsv) if ord(c) in UNSAFE]
    assert tsv[0].split("\t")[1] == "val_loss" and tsv[2].split("\t")[4].startswith("tab here newline [/red]")
