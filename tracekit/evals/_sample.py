"""Samples and datasets: the cases of an eval, loaded from JSONL, CSV, Parquet or Python lists.

    ds = Dataset.load("cases.jsonl")                       # fields: id, input, target, metadata, split
    ds = Dataset.load("qa.csv", input="question", target="answer")
    ds = Dataset.from_list([{"input": "2+2", "target": "4"}, Sample("3*3", "9", id="mul")])
    ds = ds.assign_splits(val=0.2, test=0.2)              # deterministic, by sample id

A sample's id is stable: given explicitly, or derived from a hash of its input and target, so the
same case keeps its id across runs (that is what resume and `eval compare` pair on).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._errors import EvalError

SPLITS = ("train", "val", "test")
DEFAULT_SPLIT = "train"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def content_id(input: Any, target: Any) -> str:
    """A stable id from a sample's content: 12 hex digits of sha256 over input and target."""
    return hashlib.sha256(_canonical([input, target]).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Sample:
    """One case: `input` for the thing under test, `target` for the scorers, a stable `id`.

    `split` is train, val or test (default train). The optimizer only ever reads traces of train
    cases; val and test cases are scored but their traces stay out of its context.
    """

    input: Any
    target: Any = None
    id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    split: str = DEFAULT_SPLIT

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", content_id(self.input, self.target))
        elif not isinstance(self.id, str):
            object.__setattr__(self, "id", str(self.id))
        if self.split not in SPLITS:
            raise EvalError(f"sample {self.id!r}: split={self.split!r} is not one of {', '.join(SPLITS)}")
        if not isinstance(self.metadata, dict):
            raise EvalError(f"sample {self.id!r}: metadata must be a dict, got {type(self.metadata).__name__}")


def _split_fraction(sample_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Dataset(Sequence[Sample]):
    """An ordered list of samples with unique ids."""

    def __init__(self, samples: Iterable[Sample], name: str = "dataset") -> None:
        self.samples: list[Sample] = list(samples)
        self.name = name
        seen: dict[str, int] = {}
        for i, s in enumerate(self.samples):
            if not isinstance(s, Sample):
                raise EvalError(f"{name}: item {i} is a {type(s).__name__}, expected a Sample")
            if s.id in seen:
                raise EvalError(
                    f"{name}: samples {seen[s.id]} and {i} share the id {s.id!r}; ids must be unique "
                    "(give each sample an explicit id, or remove the duplicate)"
                )
            seen[s.id] = i

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return Dataset(self.samples[index], self.name)
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        counts = {sp: sum(1 for s in self.samples if s.split == sp) for sp in SPLITS}
        return f"Dataset({self.name!r}, {len(self)} samples, " + ", ".join(f"{k}={v}" for k, v in counts.items()) + ")"

    def split(self, *names: str) -> "Dataset":
        """Only the samples of these splits (`ds.split("val", "test")`)."""
        for n in names:
            if n not in SPLITS:
                raise EvalError(f"split {n!r} is not one of {', '.join(SPLITS)}")
        return Dataset([s for s in self.samples if s.split in names], self.name)

    def assign_splits(self, *, val: float = 0.0, test: float = 0.0, seed: int = 0) -> "Dataset":
        """Give every sample a split by a hash of its id (stable when samples are added or removed)."""
        if val < 0 or test < 0 or val + test > 1:
            raise EvalError(f"assign_splits(val={val}, test={test}): fractions must be >= 0 and sum to at most 1")
        out = []
        for s in self.samples:
            f = _split_fraction(s.id, seed)
            split = "test" if f < test else "val" if f < test + val else "train"
            out.append(replace(s, split=split))
        return Dataset(out, self.name)

    # -- loaders ---------------------------------------------------------------------------------

    @classmethod
    def from_list(cls, items: Iterable[Any], *, name: str = "list", **fields: Any) -> "Dataset":
        """Samples from Sample objects, dicts (see `load` for the field names) or plain inputs."""
        mapping = _FieldMap(**fields)
        samples = []
        for i, item in enumerate(items):
            if isinstance(item, Sample):
                samples.append(item)
            elif isinstance(item, Mapping):
                samples.append(mapping.sample(item, f"{name}[{i}]"))
            else:
                samples.append(Sample(input=item))
        return cls(samples, name)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, format: str | None = None, **fields: Any) -> "Dataset":
        """Load JSONL (`.jsonl`, `.ndjson`), JSON (a list), CSV (`.csv`, `.tsv`) or Parquet.

        Field names default to id, input, target, metadata and split; rename with e.g.
        `input="question", target="answer"`. Columns not named become metadata.
        """
        p = Path(path)
        if not p.is_file():
            raise EvalError(f"dataset {str(p)!r} does not exist (or is not a file)")
        fmt = (format or p.suffix.lstrip(".")).lower()
        mapping = _FieldMap(**fields)
        if fmt in ("jsonl", "ndjson"):
            rows = list(_jsonl_rows(p))
        elif fmt == "json":
            rows = _json_rows(p)
        elif fmt in ("csv", "tsv"):
            with p.open(newline="", encoding="utf-8") as f:
                rows = [(i + 2, r) for i, r in enumerate(csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ","))]
        elif fmt in ("parquet", "pq"):
            import pyarrow.parquet as pq

            rows = [(i + 1, r) for i, r in enumerate(pq.read_table(p).to_pylist())]
        else:
            raise EvalError(f"dataset {str(p)!r}: unknown format {fmt!r}; use .jsonl, .json, .csv, .tsv or .parquet (or format=)")
        return cls([mapping.sample(r, f"{p.name}:{line}") for line, r in rows], p.stem)


def _jsonl_rows(p: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise EvalError(f"{p}:{n}: not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise EvalError(f"{p}:{n}: each line must be a JSON object, got {type(row).__name__}")
            yield n, row


def _json_rows(p: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EvalError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise EvalError(f"{p}: a JSON dataset must be a list of objects")
    return [(i, r) for i, r in enumerate(data)]


@dataclass(frozen=True)
class _FieldMap:
    input: str = "input"
    target: str = "target"
    id: str = "id"
    metadata: str = "metadata"
    split: str = "split"

    def sample(self, row: Mapping[str, Any], where: str) -> Sample:
        if self.input not in row:
            raise EvalError(f"{where}: no {self.input!r} field (fields: {', '.join(map(str, row))}); "
                            f"name the input field with input=...")
        meta: dict[str, Any] = {}
        raw_meta = row.get(self.metadata)
        if isinstance(raw_meta, str) and raw_meta.strip().startswith("{"):
            try:
                raw_meta = json.loads(raw_meta)
            except ValueError:
                raise EvalError(f"{where}: {self.metadata!r} is not a JSON object") from None
        if isinstance(raw_meta, Mapping):
            meta.update(raw_meta)
        elif raw_meta is not None:
            raise EvalError(f"{where}: {self.metadata!r} must be an object, got {type(raw_meta).__name__}")
        named = {self.input, self.target, self.id, self.metadata, self.split}
        meta.update({k: v for k, v in row.items() if k not in named})
        sid = row.get(self.id)
        split = row.get(self.split) or DEFAULT_SPLIT
        try:
            return Sample(input=row[self.input], target=row.get(self.target), id="" if sid in (None, "") else str(sid),
                          metadata=meta, split=str(split))
        except EvalError as exc:
            raise EvalError(f"{where}: {exc}") from None


def as_dataset(value: Any) -> Dataset:
    """A Dataset from a Dataset, a path, or a list (of Samples, dicts or inputs)."""
    if isinstance(value, Dataset):
        return value
    if isinstance(value, (str, os.PathLike)):
        return Dataset.load(value)
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        return Dataset.from_list(value)
    raise EvalError(f"dataset must be a Dataset, a file path or a list of samples, got {type(value).__name__}")
