"""Edits as proposers write them, normalized to new file contents and a unified diff.

Two forms, mixable in one reply (the first line starting `RATIONALE:` is the rationale):

    train.py
    <<<<<<< SEARCH
    LEARNING_RATE = 1e-3
    =======
    LEARNING_RATE = 3e-3
    >>>>>>> REPLACE

    FILE: train.py
    ```python
    ...the complete new file...
    ```

    parsed = parse_reply(text, default_path="train.py")
    new_files = apply_edits(parent_files, parsed.edits)   # ProposalError when a SEARCH text is not found
    unified_diff(parent_files, new_files)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from .._errors import OptimizerError


class ProposalError(OptimizerError):
    """A proposal cannot be turned into file contents (does not parse or does not apply)."""


@dataclass(frozen=True)
class Edit:
    path: str | None
    search: str | None  # None: `replace` is the whole file
    replace: str


@dataclass
class ParsedReply:
    edits: list[Edit] = field(default_factory=list)
    rationale: str = ""


_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
_FILE = re.compile(r"^\s*(?:#+\s*)?(?:FILE|File|file)\s*:\s*`?([^`\s]+)`?\s*$")
_RATIONALE = re.compile(r"^\s*(?:\*\*)?RATIONALE(?:\*\*)?\s*:\s*(.*)$", re.IGNORECASE)


def _path_hint(line: str) -> str | None:
    s = line.strip().strip("`*").strip()
    m = _FILE.match(line)
    if m:
        return m.group(1)
    if s and " " not in s and ("." in s or "/" in s) and len(s) < 200 and not s.startswith(("<", "=", ">")):
        return s.rstrip(":")
    return None


def parse_reply(text: str, default_path: str | None = None) -> ParsedReply:
    """Pull SEARCH/REPLACE blocks, whole-file blocks and the rationale out of a reply."""
    lines = text.splitlines()
    out = ParsedReply()
    rationale: list[str] = []
    i = 0
    last_path: str | None = None
    while i < len(lines):
        line = lines[i]
        m = _RATIONALE.match(line)
        if m and not out.rationale and not rationale:
            rationale.append(m.group(1).strip())
            j = i + 1
            while j < len(lines) and lines[j].strip() and not _FENCE.match(lines[j]) and not _SEARCH.match(lines[j]) \
                    and not _FILE.match(lines[j]) and _path_hint(lines[j]) is None:
                rationale.append(lines[j].strip())
                j += 1
            out.rationale = " ".join(r for r in rationale if r)
            i = j
            continue
        if _SEARCH.match(line):
            path = last_path or default_path
            search: list[str] = []
            replace: list[str] = []
            j = i + 1
            while j < len(lines) and not _DIVIDER.match(lines[j]):
                search.append(lines[j])
                j += 1
            if j >= len(lines):
                raise ProposalError(f"SEARCH block at line {i + 1} has no ======= divider")
            j += 1
            while j < len(lines) and not _REPLACE.match(lines[j]):
                replace.append(lines[j])
                j += 1
            if j >= len(lines):
                raise ProposalError(f"SEARCH block at line {i + 1} has no >>>>>>> REPLACE end")
            out.edits.append(Edit(path, "\n".join(search), "\n".join(replace)))
            i = j + 1
            continue
        fm = _FILE.match(line)
        if fm:
            path = fm.group(1)
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            opening = _FENCE.match(lines[j]) if j < len(lines) else None
            if opening:
                fence = opening.group(1)
                body: list[str] = []
                k = j + 1
                while k < len(lines) and lines[k].strip() != fence:
                    body.append(lines[k])
                    k += 1
                if k >= len(lines):
                    raise ProposalError(f"the code block for FILE: {path} is not closed with {fence}")
                if any(_SEARCH.match(b) for b in body):
                    last_path = path  # "FILE: x" followed by fenced SEARCH/REPLACE blocks
                    i = j + 1
                    continue
                out.edits.append(Edit(path, None, "\n".join(body) + "\n"))
                i = k + 1
                continue
            last_path = path
            i += 1
            continue
        hint = _path_hint(line)
        if hint is not None:
            last_path = hint
        i += 1
    if not out.rationale:
        first = text.strip().split("\n\n", 1)[0].strip()
        if first and not _SEARCH.match(first.splitlines()[0]) and not _FENCE.match(first.splitlines()[0]):
            out.rationale = " ".join(first.split())[:400]
    return out


def _find(content: str, search: str) -> tuple[int, int] | None:
    """Where `search` occurs exactly once in `content` (exact, then ignoring trailing whitespace)."""
    count = content.count(search)
    if count == 1:
        start = content.index(search)
        return start, start + len(search)
    if count > 1:
        raise ProposalError(f"SEARCH text occurs {count} times; include more surrounding lines so it is unique:\n{search[:300]}")
    # tolerant: compare line by line with trailing whitespace stripped
    c_lines = content.splitlines(keepends=True)
    s_lines = [s.rstrip() for s in search.splitlines()]
    while s_lines and not s_lines[-1]:
        s_lines.pop()
    if not s_lines:
        return None
    hits = []
    for i in range(len(c_lines) - len(s_lines) + 1):
        if all(c_lines[i + k].rstrip() == s_lines[k] for k in range(len(s_lines))):
            hits.append(i)
    if len(hits) > 1:
        raise ProposalError(f"SEARCH text occurs {len(hits)} times; include more surrounding lines so it is unique")
    if not hits:
        return None
    start = sum(len(x) for x in c_lines[: hits[0]])
    end = start + sum(len(x) for x in c_lines[hits[0]: hits[0] + len(s_lines)])
    return start, end


def apply_edits(files: dict[str, str], edits: list[Edit]) -> dict[str, str]:
    """New contents of every file the edits touch (other files unchanged and included)."""
    out = dict(files)
    if not edits:
        raise ProposalError("the reply holds no edit: write SEARCH/REPLACE blocks or FILE: <path> with a code block")
    for n, e in enumerate(edits, 1):
        if not e.path:
            raise ProposalError(f"edit {n} does not say which file it changes; put the file name on the line above it")
        if e.search is None:
            out[e.path] = e.replace
            continue
        if e.path not in out:
            raise ProposalError(f"edit {n} changes {e.path!r}, which does not exist (editable: {', '.join(sorted(files))})")
        content = out[e.path]
        if not e.search.strip():
            raise ProposalError(f"edit {n} on {e.path}: the SEARCH part is empty; copy the lines to replace into it")
        where = _find(content, e.search)
        if where is None:
            raise ProposalError(
                f"edit {n}: the SEARCH text was not found in {e.path}; it must match the current file exactly:\n"
                + e.search[:500]
            )
        start, end = where
        replacement = e.replace
        matched = content[start:end]
        if matched.endswith("\n") and not replacement.endswith("\n"):
            replacement += "\n"
        out[e.path] = content[:start] + replacement + content[end:]
    return out


def unified_diff(old: dict[str, str], new: dict[str, str], context: int = 3) -> str:
    """A `git apply`-able unified diff from `old` to `new` (files in sorted order)."""
    parts: list[str] = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        a_lines = (a or "").splitlines(keepends=True)
        b_lines = (b or "").splitlines(keepends=True)
        for lines in (a_lines, b_lines):
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
        header_a = f"a/{path}" if a is not None else "/dev/null"
        header_b = f"b/{path}" if b is not None else "/dev/null"
        parts.append(f"diff --git a/{path} b/{path}\n")
        parts.extend(difflib.unified_diff(a_lines, b_lines, header_a, header_b, n=context))
    return "".join(parts)


def diff_stats(diff: str) -> tuple[int, int]:
    """(lines added, lines removed) of a unified diff."""
    added = sum(1 for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++"))
    removed = sum(1 for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---"))
    return added, removed
