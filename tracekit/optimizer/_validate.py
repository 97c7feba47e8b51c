"""Validation before spending a run: a proposal becomes a `Candidate` or an `InvalidProposal`.

Rejected (status `invalid`, no run spent, one repair attempt): an edit that does not parse or
apply, a path that is not a plain relative name (absolute, `..`, a NUL byte: reason `path`), file
contents that are not text, a change to a file outside the allowlist, a change that changes nothing, a candidate
identical to an earlier one (same content hash), a file over the size cap or a diff over the line
cap, and Python that does not compile.

    cand = build_candidate(proposal, parent_files, target, known={"3f2a...": "main-0004"})
    cand.diff, cand.content_hash, cand.files_changed
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import OptimizerError
from ._edits import ProposalError, apply_edits, diff_stats, parse_reply, unified_diff
from ._safefs import path_problem

if TYPE_CHECKING:
    from ._proposer import Proposal
    from ._target import Target


class InvalidProposal(OptimizerError):
    """The proposal was rejected before running; `reason` is one of the kinds below."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # parse | apply | path | symlink | allowlist | noop | duplicate | size | syntax | empty | command


@dataclass(frozen=True)
class Candidate:
    files: dict[str, str]  # every editable file, after the edit
    diff: str
    content_hash: str
    files_changed: list[str]
    diff_lines: int


def content_hash(files: Mapping[str, str]) -> str:
    """SHA-256 over the editable files' paths and contents (the duplicate check's key)."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.encode() + b"\0" + files[path].encode() + b"\0")
    return h.hexdigest()


def _check_paths(paths: Iterable[object]) -> None:
    """Every path a proposal names must be a plain relative path: checked before the allowlist so the reason is exact."""
    for path in paths:
        problem = path_problem(path)
        if problem:
            raise InvalidProposal("path", f"the proposal names the path {problem}; name the editable files exactly as "
                                          "listed, relative to the target")


def build_candidate(proposal: "Proposal", parent: Mapping[str, str], target: "Target",
                    known: Mapping[str, str] | None = None) -> Candidate:
    """Turn a proposal into the candidate's files, or raise InvalidProposal saying why not.

    `known` maps content hashes already tried (or in flight) to their experiment ids.
    """
    allowed = set(target.editable)
    if proposal.files is not None:
        if not isinstance(proposal.files, dict):
            raise InvalidProposal("parse", f"the proposal's files are a {type(proposal.files).__name__}, not a mapping of "
                                           "path to text")
        _check_paths(proposal.files)
        bad = sorted(str(k) for k, v in proposal.files.items() if not isinstance(v, str))
        if bad:
            raise InvalidProposal("parse", f"the new contents of {', '.join(bad)} are not text")
        new = dict(parent)
        outside = sorted(set(proposal.files) - allowed)
        if outside:
            raise InvalidProposal("allowlist", f"the proposal changes {', '.join(outside)}, outside the editable files "
                                               f"({', '.join(sorted(allowed))}); only those may change")
        new.update(proposal.files)
    elif proposal.text:
        default = target.editable[0] if len(target.editable) == 1 else None
        try:
            parsed = parse_reply(proposal.text, default_path=default)
        except ProposalError as exc:
            raise InvalidProposal("parse", str(exc)) from None
        _check_paths(e.path for e in parsed.edits if e.path)
        outside = sorted({e.path for e in parsed.edits if e.path and e.path not in allowed})
        if outside:
            raise InvalidProposal("allowlist", f"the proposal edits {', '.join(outside)}, outside the editable files "
                                               f"({', '.join(sorted(allowed))}); only those may change")
        try:
            new = apply_edits(dict(parent), parsed.edits)
        except ProposalError as exc:
            raise InvalidProposal("apply", str(exc)) from None
        if not proposal.rationale:
            proposal.rationale = parsed.rationale
    else:
        raise InvalidProposal("empty", "the proposal holds no edit (neither edit blocks nor files)")
    if new == dict(parent):
        raise InvalidProposal("noop", "the proposal changes nothing: the files are identical to the incumbent's")
    for path, text in new.items():
        size = len(text.encode())
        if size > target.max_file_bytes:
            raise InvalidProposal("size", f"{path} would be {size} bytes, over the cap of {target.max_file_bytes} "
                                          "(max_file_bytes); propose a smaller change")
    diff = unified_diff(dict(parent), new)
    added, removed = diff_stats(diff)
    if added + removed > target.max_diff_lines:
        raise InvalidProposal("size", f"the diff changes {added + removed} lines, over the cap of "
                                      f"{target.max_diff_lines} (max_diff_lines); propose a smaller change")
    for path, text in new.items():
        if path.endswith(".py") and text != parent.get(path):
            try:
                compile(text, path, "exec", dont_inherit=True)
            except SyntaxError as exc:
                raise InvalidProposal("syntax", f"{path} does not compile: {exc.msg} at line {exc.lineno}: "
                                                f"{(exc.text or '').strip()[:200]}") from None
            except ValueError as exc:
                raise InvalidProposal("syntax", f"{path} does not compile: {exc}") from None
    h = content_hash(new)
    if known and h in known:
        raise InvalidProposal("duplicate", f"the candidate is identical to experiment {known[h]}'s code; "
                                           "propose something not tried yet")
    changed = sorted(p for p in new if new[p] != parent.get(p))
    return Candidate(new, diff, h, changed, added + removed)
