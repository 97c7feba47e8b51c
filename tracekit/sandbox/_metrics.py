"""The metric contract: read `$TRACEKIT_RESULT` safely, else parse stdout; then decide the status.

The result file is one JSON object, `{"metrics": {"name": number, ...}, ...}`, opened without
following symlinks (the final component, and the folder through a descriptor), regular files
only, at most `result_bytes`, nested at most 100 levels (a deeper file is an error, never a crash). If the file exists it is the only source (an invalid file is an
error, not a reason to scrape stdout). Otherwise the last `METRIC name=value` line per name
counts, plus `name: value` lines for the configured metric (autoresearch prints `val_bpb: 0.99`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .._util.jsonutil import JSONLimitError, loads_limited
from .._util.saferead import SafeDir, UnsafePath

_METRIC_LINE = re.compile(r"^METRIC\s+([A-Za-z_][\w.\-/]*)\s*=\s*(\S+)\s*$")
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity))"
MAX_METRICS = 1000


@dataclass
class MetricReport:
    metrics: dict[str, float] = field(default_factory=dict)
    nonfinite: list[str] = field(default_factory=list)
    source: str | None = None  # "result_json" | "stdout" | None
    error: str | None = None  # why the result file was rejected


def read_result_file(folder: Path, name: str, max_bytes: int) -> MetricReport | None:
    """The parsed result file, or None when there is none. Never follows a symlink (see `tracekit._util.saferead`)."""
    try:
        d = SafeDir.open(folder, label="result folder")
    except (OSError, UnsafePath) as exc:
        return MetricReport(error=f"result folder {folder} is unusable ({exc}); it was replaced or removed by the run")
    try:
        data = d.read(name, max_bytes)
    except FileNotFoundError:
        return None
    except UnsafePath as exc:
        return MetricReport(error={
            "link": "result file is a symlink; tracekit does not follow it (write the JSON to $TRACEKIT_RESULT itself)",
            "size": f"result file is larger than {max_bytes} bytes; write only the metrics JSON",
        }.get(exc.reason, f"result file is not a regular file ({exc})"))
    except OSError as exc:
        return MetricReport(error=f"result file cannot be opened safely ({exc.strerror})")
    finally:
        d.close()
    return parse_result_json(data)


def parse_result_json(data: bytes) -> MetricReport:
    try:
        doc = loads_limited(data.decode("utf-8"))
    except JSONLimitError as exc:
        return MetricReport(error=f"result file refused: {exc}; write a flat {{\"metrics\": {{\"name\": number}}}} object")
    except (UnicodeDecodeError, ValueError) as exc:
        return MetricReport(error=f"result file is not valid JSON ({exc}); expected {{\"metrics\": {{\"name\": number}}}}")
    if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
        return MetricReport(error='result file must be a JSON object with a "metrics" object: {"metrics": {"name": number}}')
    report = MetricReport(source="result_json")
    items = list(doc["metrics"].items())
    if len(items) > MAX_METRICS:
        return MetricReport(error=f"result file has {len(items)} metrics; at most {MAX_METRICS}")
    for key, value in items:
        if not isinstance(key, str) or not key or len(key) > 200:
            return MetricReport(error=f"result file: bad metric name {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return MetricReport(error=f"result file: metric {key!r} is {type(value).__name__} {value!r}, expected a number")
        v = float(value)
        if math.isfinite(v):
            report.metrics[key] = v
        else:
            report.nonfinite.append(key)
    return report


def parse_stdout(text: str, metric: str | None) -> MetricReport:
    """Last `METRIC name=value` per name, plus `<metric>: value` lines for the configured metric."""
    named = re.compile(rf"^\s*{re.escape(metric)}\s*:\s*{_NUMBER}\s*$", re.IGNORECASE) if metric else None
    found: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip("\r")
        m = _METRIC_LINE.match(line)
        if m:
            v = _float(m.group(2))
            if v is not None and (m.group(1) in found or len(found) < MAX_METRICS):
                found.pop(m.group(1), None)
                found[m.group(1)] = v
            continue
        if named is not None and metric is not None:
            m2 = named.match(line)
            if m2:
                v = _float(m2.group(1))
                if v is not None:
                    found.pop(metric, None)
                    found[metric] = v
    report = MetricReport(source="stdout" if found else None)
    for k, v in found.items():
        if math.isfinite(v):
            report.metrics[k] = v
        else:
            report.nonfinite.append(k)
    return report


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def metric_problem(report: MetricReport, metric: str | None) -> str | None:
    """Why the run has no usable metric, or None when it has one."""
    if report.error:
        return report.error
    if report.nonfinite:
        return f"non-finite metric value for {', '.join(sorted(report.nonfinite))} (NaN or infinity is never a score)"
    if metric is not None:
        if metric not in report.metrics:
            have = f" (reported: {', '.join(sorted(report.metrics))})" if report.metrics else ""
            return f"metric {metric!r} was not reported{have}; write {{\"metrics\": {{\"{metric}\": value}}}} to $TRACEKIT_RESULT or print 'METRIC {metric}=value'"
        return None
    if not report.metrics:
        return "no metric reported; write {\"metrics\": {...}} to $TRACEKIT_RESULT or print 'METRIC name=value'"
    return None


def decide_status(*, killed: bool, timed_out: bool, oom: bool, output_limit: bool, exit_code: int | None,
                  signal: int | None, metric_error: str | None) -> str:
    """Status precedence: killed > timeout > oom > output_limit > crash > no_metric > ok."""
    if killed:
        return "killed"
    if timed_out:
        return "timeout"
    if oom:
        return "oom"
    if output_limit:
        return "output_limit"
    if signal is not None or exit_code != 0:
        return "crash"
    if metric_error is not None:
        return "no_metric"
    return "ok"
