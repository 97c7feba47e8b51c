"""What a run brings home is hostile: the ledger stays the harness's, caps hold, no link is followed, no JSON bomb escapes.

Attacks come from real candidates in the real sandbox (backend "auto"); the memory bounds are
measured in a subprocess that does nothing but the ingest; parsers are called directly.
"""

from __future__ import annotations

import gzip
import json
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tracekit
from tracekit import Store
from tracekit.sandbox import run

from tests._support.sandbox import marker, py, spec
from tests._support.spool import (
    EPOCH,
    forge,
    ingest_in_a_subprocess,
    lie_about_sizes,
    notes,
    parquet_bytes,
    rows,
    span_columns,
    spool_with,
    stored_span,
)

# -- 3. the ledger and the other tables: an allowlist, re-tagging, ids ------------------------------


ADDED_LATER = """
from tracekit.store._schema import STRING, Column, Table
from tracekit.store._tables import register_table
register_table(Table(name="added_later", doc="a table registered after the allowlist was written",
                     columns=(Column("x", STRING, "x", required=True),)))
"""


def test_a_run_cannot_write_the_ledger_or_a_table_off_the_allowlist(tmp_path: Path, home: Path) -> None:
    from tracekit.store._tables import TABLES

    exec(ADDED_LATER, {})  # the harness knows the table too: it is registered, just not allowed
    try:
        code = """
            spool.write("experiments", [dict(experiment_id="main-0001", run_id="main", seq=1, status="keep",
                                             metric=-1000.0, description="forged")])
            spool.write("added_later", [dict(x="smuggled")])
            spool.write("spans", [span("1" * 16)])
        """
        res = run(spec(tmp_path, py(ADDED_LATER + forge(code), marker()), trace_home=home, otlp=False, experiment_id="exp-1"))
        assert res.status == "ok", (res.error, res.stderr.text())
        assert rows(home, "experiments") == [] and rows(home, "added_later") == []
        assert "spool/experiments: not brought home" in notes(res) and "spool/added_later: not brought home" in notes(res)
        assert res.spans_ingested == 1  # what it may bring still comes home
    finally:
        TABLES.pop("added_later", None)


def test_rows_from_a_run_carry_its_experiment_and_project_whatever_it_wrote(tmp_path: Path, home: Path) -> None:
    code = """
        spool.write("spans", [span("1" * 16, experiment_id="someone-else", project="other")])
        spool.write("eval_runs", [eval_run("ev-1")])
        spool.write("eval_results", [eval_result("ev-1", "a")])
    """
    res = run(spec(tmp_path, py(forge(code), marker()), trace_home=home, otlp=False, experiment_id="exp-1"))
    assert res.status == "ok", (res.error, res.stderr.text())
    mine = [s for s in rows(home, "spans") if s["name"] == "mine"]
    assert [(s["experiment_id"], s["project"]) for s in mine] == [("exp-1", "test")]
    for table in ("eval_runs", "eval_results"):
        assert [(r["experiment_id"], r["project"]) for r in rows(home, table)] == [("exp-1", "test")], table


def test_spans_with_malformed_reused_or_harness_ids_are_refused(tmp_path: Path, home: Path) -> None:
    code = """
        spool.write("spans", [
            span("1" * 16),                                  # fine
            span("2" * 16, trace_id="AB" * 16),              # uppercase trace id
            span("3" * 15),                                  # short span id
            span("4" * 16, trace_id="0" * 32),               # all-zero trace id
            span("5" * 16, parent="not-a-span-id"),          # malformed parent
            span(RUN_SPAN, parent=None, name="fake run span"),  # the harness's own run span id
            span("1" * 16, name="duplicate"),                # the same (trace_id, span_id) twice
        ])
    """
    res = run(spec(tmp_path, py(forge(code), marker()), trace_home=home, otlp=False, experiment_id="exp-1"))
    assert res.status == "ok", (res.error, res.stderr.text())
    tracekit.flush()
    stored = [s for s in rows(home, "spans") if s["trace_id"] == res.trace_id]
    assert sorted((s["name"], s["span_id"]) for s in stored) == sorted([("mine", "1" * 16), ("sandbox.run", res.span_id)])
    text = notes(res)
    assert "malformed trace_id" in text and "harness's own run span" in text and "twice" in text


def test_a_run_cannot_add_spans_or_eval_rows_to_another_experiments_trace(tmp_path: Path, home: Path) -> None:
    victim = "ab" * 16
    Store(home).write("spans", [stored_span(victim, "cd" * 8, "victim", experiment_id="exp-victim")])
    code = """
        victim = os.environ["VICTIM"]
        spool.write("spans", [span("1" * 16), span("2" * 16, trace_id=victim, parent="cd" * 8, name="injected"),
                              span("cd" * 8, trace_id=victim, parent=None, name="overwrite")])
        spool.write("eval_runs", [eval_run("ev-1")])
        spool.write("eval_results", [eval_result("ev-1", "mine", trace_id="12" * 16),
                                     eval_result("ev-1", "theirs", trace_id=victim)])
    """
    res = run(spec(tmp_path, py(forge(code), marker()), trace_home=home, otlp=False, experiment_id="exp-1",
                   env={"VICTIM": victim}))
    assert res.status == "ok", (res.error, res.stderr.text())
    assert [s["name"] for s in rows(home, "spans") if s["trace_id"] == victim] == ["victim"]
    assert res.spans_ingested == 1
    assert [r["case_id"] for r in rows(home, "eval_results")] == ["mine"]
    assert "a trace the store already holds" in notes(res)


def test_eval_rows_must_belong_to_an_eval_run_the_run_started(tmp_path: Path, home: Path) -> None:
    Store(home).write("eval_runs", [dict(run_id="victim-run", task="t", event="started", time=EPOCH)])
    code = """
        spool.write("eval_runs", [eval_run("ev-1"), eval_run("victim-run", event="finished")])
        spool.write("eval_results", [eval_result("ev-1", "a"), eval_result("victim-run", "b"), eval_result("never-started", "c"),
                                     eval_result("ev-1", "a")])
    """
    res = run(spec(tmp_path, py(forge(code), marker()), trace_home=home, otlp=False, experiment_id="exp-1"))
    assert res.status == "ok", (res.error, res.stderr.text())
    assert sorted((r["run_id"], r["event"]) for r in rows(home, "eval_runs")) == [("ev-1", "started"), ("victim-run", "started")]
    assert [(r["run_id"], r["case_id"]) for r in rows(home, "eval_results")] == [("ev-1", "a")]
    assert "eval run id the store already holds" in notes(res) and "did not start" in notes(res)


def test_oversized_fields_and_event_floods_are_refused(tmp_path: Path, home: Path) -> None:
    code = """
        import json
        flood = [dict(time=NOW, name="e", attributes="{}")] * 20_000
        spool.write("spans", [span("1" * 16), span("2" * 16, input=json.dumps("x" * (2 << 20))),
                              span("3" * 16, events=flood)])
    """
    res = run(spec(tmp_path, py(forge(code), marker()), trace_home=home, otlp=False, experiment_id="exp-1"))
    assert res.status == "ok", (res.error, res.stderr.text())
    assert [s["span_id"] for s in rows(home, "spans") if s["name"] == "mine"] == ["1" * 16]
    assert "input over 1048576 bytes" in notes(res) and "events over" in notes(res)


FORGING_BOWL_TAIL = '''

def _forge_the_ledger():
    """An attack: outcome rows for the optimizer's ledger, written into this run's spool."""
    import datetime, os
    from tracekit import Store
    forged = [dict(experiment_id=f"main-{seq:04d}", run_id="main", seq=seq, status="keep", metric=-1000.0,
                   description="forged", candidate_commit="0" * 40, finished_at=datetime.datetime(2026, 1, 1))
              for seq in range(0, 6)]
    Store(os.environ["TRACEKIT_HOME"]).write("experiments", forged)


_forge_the_ledger()
'''


def test_forged_experiments_rows_never_reach_the_ledger_even_after_a_resume(tmp_path: Path) -> None:
    from tracekit.optimizer import Ledger

    from tests._support.optimizer import BOWL, check_git, make_target, optimize

    root = make_target(tmp_path / "bowl", script=BOWL + FORGING_BOWL_TAIL)
    first = optimize(root, iterations=2, proposer="search")
    home = first.home
    again = optimize(root, iterations=4, proposer="search")  # resumes the same run
    led = Ledger(home, "main")
    assert [r["seq"] for r in led.rows] == list(range(5)) and not led.pending()
    assert all(r["description"] != "forged" and r["metric"] != -1000.0 for r in led.rows)
    assert [r["experiment_id"] for r in again.rows] == [r["experiment_id"] for r in led.rows]
    assert again.best_metric is not None and again.best_metric > 0
    n = tracekit.query("SELECT count(*), count(*) FILTER (WHERE description = 'forged') FROM experiments", home=home).fetchall()
    assert n == [(5, 0)]
    check_git(home, led.rows)
    for r in led.rows:  # every run did try: the refusal is on record
        result = json.loads((led.exp_dir(r["experiment_id"]) / "result.json").read_text())
        assert any("io/spool/experiments: not brought home" in note for res in result["results"] for note in res["notes"])


# -- 6. caps on rows and decoded bytes, measured --------------------------------------------------


def test_parquet_bombs_are_capped_before_they_are_decoded(tmp_path: Path) -> None:
    n = 1_000_000  # ~1.5 MB on disk, 2.2 GB once decoded: the reported attack
    many = spool_with(tmp_path, "many-rows", parquet_bytes("spans", pa.table(span_columns(
        n, span_id=pa.array(["1" * 16] * n), input=pa.array(['"' + "x" * 2000 + '"'] * n))), compression="zstd"))
    big = "y" * (8 << 20)  # one 8 MB value, 200 rows using it: 1 KB on disk, 1.6 GB dense
    dictionary = spool_with(tmp_path, "dictionary", parquet_bytes(
        "spans", pa.table(span_columns(200, input=pa.array([big] * 200))), compression="zstd"))
    lying = parquet_bytes("spans", pa.table(span_columns(1, input=pa.array(["z" * (150 << 20)]))), compression="zstd",
                          use_dictionary=False, write_statistics=False)  # one 150 MB page, the footer says 1000 bytes
    lying_dir = spool_with(tmp_path, "lying-footer", lie_about_sizes(lying))
    assert pq.read_metadata(lying_dir / "spool" / "spans" / "lying-footer.parquet").row_group(0).total_byte_size == 1000
    del big, lying
    for io_dir, expect, count in ((many, "many-rows.parquet: 1000000 rows; only the first 50000 fit the row cap", 1),
                                  (dictionary, "dictionary.parquet: stopped after 3 rows", 0),
                                  (lying_dir, "lying-footer.parquet: its pages decode to at least 157286", 0)):
        got = ingest_in_a_subprocess(io_dir, tmp_path / "home", 32 << 20, max_rows=50_000)
        assert expect in " | ".join(got["problems"]), got["problems"]
        assert got["count"] == count  # 1M rows of one span id: one comes home; 3 rows of 8 MB fields: refused
        assert got["growth_mb"] < 150, got  # the budget is 32 MB; unbounded, these need 2.2 GB, 1.6 GB and 150 MB


def test_otlp_bombs_are_capped_by_decompressed_size_and_span_count(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    io_dir = tmp_path / "io"
    otlp = io_dir / "otlp"
    otlp.mkdir(parents=True)
    (otlp / "000001.pb.gz").write_bytes(gzip.compress(b"\0" * (512 << 20), compresslevel=9))  # 512 MB from ~0.5 MB
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i in range(30_000):
        s = spans.add()
        s.trace_id, s.span_id, s.name = bytes.fromhex("12" * 16), (i + 1).to_bytes(8, "big"), "flood"
    (otlp / "000002.pb.gz").write_bytes(gzip.compress(request.SerializeToString()))
    (otlp / "000003.json").write_bytes(b'{"resourceSpans": [' + b"{}," * (3 << 20) + b"{}]}")  # 9 MB of JSON objects
    (otlp / "000004.json").write_bytes(b"[" * 100_000)
    got = ingest_in_a_subprocess(io_dir, tmp_path / "home", 32 << 20, max_rows=10_000)
    text = " | ".join(got["problems"])
    assert "000001.pb.gz: body decompresses to more than the limit" in text
    assert "000002.pb.gz: 30000 spans; only the first 10000 fit the row cap" in text
    assert "000003.json: " in text and "over the limit of 8388608 bytes" in text
    assert "000004.json: body is not valid JSON (JSON is nested deeper than 100 levels)" in text
    assert got["count"] == 10_000
    assert got["growth_mb"] < 150, got


def test_bombs_in_a_real_run_end_as_notes_never_as_an_exception(tmp_path: Path, home: Path) -> None:
    code = """
        import gzip, pyarrow as pa
        otlp = os.path.join(os.path.dirname(os.environ["TRACEKIT_HOME"]), "otlp")
        open(f"{otlp}/000001.pb.gz", "wb").write(gzip.compress(b"\\0" * (256 << 20)))
        open(f"{otlp}/000002.json", "wb").write(b"[" * 200_000)
        rows = [span(f"{i + 1:016x}", input='"' + "x" * 2000 + '"') for i in range(300_000)]
        spool.write("spans", rows)
    """
    res = run(spec(tmp_path, py(forge(code), marker()), trace_home=home, otlp=False, experiment_id="exp-1",
                   memory_mb=2048, disk_mb=512, budget_s=120, trace_bytes=16 << 20))
    assert res.status == "ok", (res.error, res.stderr.text())
    text = notes(res)
    assert "decompresses to more than the limit" in text and "nested deeper than 100 levels" in text
    assert "decodes past the trace budget" in text
    assert 0 < res.spans_ingested < 300_000
    assert json.loads((res.run_dir / "run.json").read_text())["status"] == "ok"


# -- 7. no link followed, no FIFO opened --------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "local"])
def test_a_spool_or_io_folder_swapped_for_a_symlink_is_not_followed(tmp_path: Path, home: Path, backend: str) -> None:
    elsewhere = tmp_path / "elsewhere"  # another store, full of valid spans
    Store(elsewhere).write("spans", [stored_span("12" * 16, f"{i + 1:016x}", "elsewhere") for i in range(3)])
    code = """
        import os, shutil
        shutil.rmtree(os.environ["TRACEKIT_HOME"], ignore_errors=True)
        os.symlink(os.environ["ELSEWHERE"], os.environ["TRACEKIT_HOME"])
        otlp = os.path.join(os.path.dirname(os.environ["TRACEKIT_HOME"]), "otlp")
        shutil.rmtree(otlp, ignore_errors=True)
        os.symlink(os.environ["ELSEWHERE"] + "/spans", otlp)
        print("METRIC ok=1")
    """
    res = run(spec(tmp_path, py(code, marker()), trace_home=home, otlp=False, env={"ELSEWHERE": str(elsewhere)},
                   backend=backend))
    assert res.status == "ok", (res.error, res.stderr.text())
    assert res.spans_ingested == 0 and not [s for s in rows(home, "spans") if s["name"] == "elsewhere"]
    if res.backend == "local":  # the live folder: ingest itself refuses the links
        assert "io/spool is a symlink, not a folder" in notes(res) and "io/otlp is a symlink, not a folder" in notes(res)
    else:  # isolated: the copy out of the run's tmpfs already left the links behind
        assert "symlinks were not copied (spool)" in notes(res) and "symlinks were not copied (otlp)" in notes(res)
    # the io folder itself (the local backend's live folder can be swapped too)
    from tracekit.sandbox._spans import ingest

    link = tmp_path / "io-link"
    link.symlink_to(elsewhere, target_is_directory=True)
    count, problems = ingest(link, home, "exp-1", 1 << 20)
    assert count == 0 and "is a symlink, not a folder" in problems[0]


@pytest.mark.parametrize("backend", ["auto", "local"])
def test_fifos_links_and_folders_in_place_of_spool_files_are_skipped_without_blocking(tmp_path: Path, home: Path,
                                                                                         backend: str) -> None:
    code = """
        os.makedirs(f"{os.environ['TRACEKIT_HOME']}/spans", exist_ok=True)
        otlp = os.path.join(os.path.dirname(os.environ["TRACEKIT_HOME"]), "otlp")
        os.mkfifo(f"{os.environ['TRACEKIT_HOME']}/spans/fifo.parquet")
        os.mkfifo(f"{otlp}/000001.pb")
        os.symlink("/dev/zero", f"{os.environ['TRACEKIT_HOME']}/spans/zero.parquet")
        os.mkdir(f"{os.environ['TRACEKIT_HOME']}/spans/folder.parquet")
        open(f"{os.environ['TRACEKIT_HOME']}/eval_results", "w").write("a file where a folder belongs")
        spool.write("spans", [span("1" * 16)])
    """
    res = run(spec(tmp_path, py(forge(code), marker()), trace_home=home, otlp=False, budget_s=30, backend=backend))
    assert res.status == "ok", (res.error, res.stderr.text())
    assert res.spans_ingested == 1
    text = notes(res)
    if res.backend == "local":  # the live folder: ingest refuses them
        refused = ("fifo.parquet is a FIFO", "000001.pb is a FIFO", "zero.parquet is a symlink")
    else:  # isolated: the copy out of the run's tmpfs already left them behind
        refused = ("special files were not copied (spool/spans/fifo.parquet)", "special files were not copied (otlp/000001.pb)",
                   "symlinks were not copied (spool/spans/zero.parquet)")
    for what in (*refused, "folder.parquet is a folder", "io/spool/eval_results is a regular file, not a folder"):
        assert what in text, what


def test_a_flood_of_files_is_read_only_up_to_the_file_cap(tmp_path: Path, home: Path) -> None:
    from tracekit.sandbox._spans import ingest
    from tracekit.sandbox._spool import MAX_FILES

    spans = tmp_path / "io" / "spool" / "spans"
    spans.mkdir(parents=True)
    for i in range(MAX_FILES + 500):
        (spans / f"{i:06d}.parquet").touch()
    for i in range(100):
        (tmp_path / "io" / "spool" / f"junk-{i}").touch()
    count, problems = ingest(tmp_path / "io", home, "exp-1", 1 << 20)
    assert count == 0
    assert f"io/spool/spans: {MAX_FILES + 500} files; only the first {MAX_FILES} were read" in problems
    assert "io/spool: 80 more entries not brought home" in problems
    assert len(problems) <= MAX_FILES + 30


@pytest.mark.parametrize("backend", ["auto", "local"])
def test_eval_output_files_are_read_without_following_links_and_within_the_cap(tmp_path: Path, home: Path,
                                                                                backend: str) -> None:
    from tracekit.evals import Sample, Task, run_eval, sandboxed, scorers

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "write.py").write_text(textwrap.dedent("""
        import os, sys
        how = sys.argv[1]
        if how == "plain":
            open("answer.txt", "w").write("42")
        elif how == "link":
            open("elsewhere.txt", "w").write("42")
            os.symlink("elsewhere.txt", "answer.txt")
        elif how == "fifo":
            os.mkfifo("answer.txt")
        elif how == "big":
            open("answer.txt", "w").write("4" * (1 << 20))
    """))
    cases = [Sample(how, "42", id=how) for how in ("plain", "link", "fifo", "big")]
    report = run_eval(Task(cases, solver=sandboxed(["python", "write.py", "{input}"], workspace=ws, output="file:answer.txt",
                                                   output_bytes=64 * 1024, backend=backend),
                           scorers=[scorers.exact()], name="files"))
    by_id = {r["case_id"]: r for r in report.rows}
    assert by_id["plain"]["passed"]
    assert "answer.txt is a symlink" in by_id["link"]["error"]
    fifo = "answer.txt is a FIFO" if backend == "local" else "did not write answer.txt"  # isolated: never copied out
    assert fifo in by_id["fifo"]["error"]
    assert "over the limit of 65536 bytes" in by_id["big"]["error"]


# -- 12. JSON bombs: a clear, recorded error wherever JSON from a run or a client is parsed --------


def test_a_deeply_nested_result_file_is_a_recorded_no_metric_not_an_exception(tmp_path: Path) -> None:
    code = "import os\nopen(os.environ['TRACEKIT_RESULT'], 'w').write('[' * 200_000)\n"
    res = run(spec(tmp_path, py(code, marker()), metric="score"))
    assert res.status == "no_metric"
    assert "nested deeper than 100 levels" in (res.error or "")
    assert json.loads((res.run_dir / "run.json").read_text())["status"] == "no_metric"


def test_a_json_bomb_on_stdout_is_a_failed_eval_case(tmp_path: Path, home: Path) -> None:
    from tracekit.evals import Sample, Task, run_eval, sandboxed, scorers

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "bomb.py").write_text("print('[' * 50_000 + ']' * 50_000)\n")
    report = run_eval(Task([Sample("x", "y", id="bomb")], solver=sandboxed(["python", "bomb.py"], workspace=ws, output="json"),
                           scorers=[scorers.exact()], name="bomb"))
    row = report.rows[0]
    assert row["status"] == "error" and "stdout JSON refused: JSON is nested deeper than 100 levels" in row["error"]


def test_the_safe_json_loader_refuses_depth_and_size_bombs() -> None:
    from tracekit._util.jsonutil import JSONLimitError, loads_limited

    for bomb in ("[" * 100_000 + "]" * 100_000, "{\"a\":" * 500 + "1" + "}" * 500, "[" * 101 + "]" * 101):
        with pytest.raises(JSONLimitError, match="nested deeper than 100 levels"):
            loads_limited(bomb)
    assert loads_limited("[" * 100 + "]" * 100) is not None
    with pytest.raises(JSONLimitError, match="over the limit of 10 bytes"):
        loads_limited("[1, 2, 3, 4, 5]", max_bytes=10)


def test_json_bombs_are_clear_errors_at_every_parser_of_untrusted_json() -> None:
    from tracekit.evals._metrics import _scores_json
    from tracekit.evals._sample import Sample
    from tracekit.evals.scorers import json_match
    from tracekit.optimizer._command import parse_cost
    from tracekit.optimizer._context_evals import _json_text, _message_text
    from tracekit.sandbox._metrics import parse_result_json
    from tracekit.store import _otlp
    from tracekit.trajectories._trajectory import _loads

    deep = "[" * 100_000 + "]" * 100_000
    assert "nested deeper" in (parse_result_json(deep.encode()).error or "")
    with pytest.raises(_otlp.MalformedRequest, match="nested deeper than 100 levels"):
        _otlp.parse(deep.encode(), _otlp.JSON)
    score = json_match()(deep, Sample("q", [1], id="s"))
    assert score.value == 0 and "nested deeper" in (score.explanation or "")
    assert _json_text(deep) == deep and _message_text(deep) == (deep, []) and _loads(deep) == deep
    assert _scores_json({"scores": deep}) == {}
    assert parse_cost(deep).tokens_in == 0


def test_a_deep_cursor_is_a_400_not_a_crash() -> None:
    import base64

    from tracekit.collector._read import _decode_cursor
    from tracekit.collector._state import HTTPProblem

    cursor = base64.urlsafe_b64encode(b"[" * 5000).decode()
    with pytest.raises(HTTPProblem) as err:
        _decode_cursor(cursor)
    assert err.value.status == 400  # type: ignore[attr-defined]
