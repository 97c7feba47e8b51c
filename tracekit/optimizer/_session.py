"""One optimization run on disk: its folder, git branch, base workspace and run specs.

    <home>/optimizer/<run_id>/
        run.json            the run's identity: target settings, branch, baseline commit, fixed-file hashes
        lock                held (flock) by the loop working on this run
        STOP                create it to stop the loop after the experiments in flight
        setup.log           output of the target's setup command
        base/               the target folder after setup; every workspace starts as a copy of it
        work/<id>/          an experiment's workspace while it runs (removed afterwards)
        experiments/<id>/   intent.json, result.json, run/ (the sandbox's logs)
        context/            the read-only context folder for agentic proposers
        results.tsv         autoresearch's five columns, regenerated from the ledger

    session = Session(target, home, "main"); session.open()
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from .._errors import OptimizerError
from ._command import copy_target
from ._gitrepo import GitError, GitRepo
from ._ledger import Ledger, _atomic_json
from ._registration import check as check_registration
from ._registration import registration
from ._safefs import Dir, UnsafePath, copy_tree, own_dir, remove_tree
from ._target import TOML_NAME, Target

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FORMAT_VERSION = 1


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def host_facts() -> dict[str, Any]:
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {"cpus": os.cpu_count(), "load": load, "python": platform.python_version(),
            "machine": platform.machine(), "node": platform.node()}


def loop_pid(run_dir: Path) -> int | None:
    """The pid of the loop working on the run in `run_dir` now (it holds the run's lock; -1 if unknown), else None."""
    try:
        # O_NONBLOCK: opening a FIFO planted as the lock would otherwise wait for a writer forever
        fd = os.open(Path(run_dir) / "lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = f.read().strip()
            return int(holder) if holder.isdigit() else -1
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


class Session:
    """The on-disk state of one run; `open()` locks it and prepares git and the base workspace."""

    def __init__(self, target: Target, home: Path, run_id: str) -> None:
        if not RUN_ID.match(run_id):
            raise OptimizerError(f"run id {run_id!r}: use letters, digits, '.', '_' or '-' (max 64), e.g. --tag main")
        self.target = target
        self.home = Path(home).resolve()
        self.run_id = run_id
        self.dir = self.home / "optimizer" / run_id
        self.branch = f"refs/heads/tracekit/{run_id}"
        self.meta: dict[str, Any] = {}
        self.repo: GitRepo | None = None
        self.ledger: Ledger | None = None
        self._lock: IO[str] | None = None

    @property
    def stop_file(self) -> Path:
        return self.dir / "STOP"

    @property
    def base(self) -> Path:
        return self.dir / "base"

    # -- opening ------------------------------------------------------------------------------

    def open(self, log: Any = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for folder in (self.dir.parent, self.dir):
            if folder.is_symlink():
                raise OptimizerError(f"{folder} is a symbolic link; the optimizer writes its run folder only where "
                                     "--home says. Remove the link (or pass --home with the real folder)")
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise OptimizerError(f"{self.dir / 'lock'} is not a plain file of its own (hard-linked or special); "
                                 "delete it and start again")
        self._lock = os.fdopen(fd, "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            holder = self._lock.read().strip()
            self._lock.close()
            self._lock = None
            raise OptimizerError(f"run {self.run_id!r} is already being optimized (pid {holder or '?'}); "
                                 f"wait for it, stop it (touch {self.stop_file}) or use another --tag") from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        self.repo = GitRepo.for_target(self.target.root, self.home)
        if not self.repo.private and self.home.is_relative_to(self.target.root):
            self.repo.exclude("/" + str(self.home.relative_to(self.target.root)) + "/")
        self.ledger = Ledger(self.home, self.run_id)
        meta_path = self.dir / "run.json"
        if meta_path.is_file():
            self.meta = json.loads(meta_path.read_text())
            if not self._reregister_after_failed_baseline(log):
                self._check_identity()
                self._check_registration()
                self._warn_if_target_edited(log)
        else:
            self._create()
        if self.stop_file.exists() or self.stop_file.is_symlink():
            remove_tree(self.stop_file)  # left from before this loop started: it would end the run at once
            if log:
                log("warning", {"message": f"removed {self.stop_file}, left from an earlier `optimize stop`"})
        self._prepare_base(log)

    def close(self) -> None:
        if self._lock is not None:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            finally:
                self._lock.close()
                self._lock = None

    def _identity_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.target.identity(), sort_keys=True).encode()).hexdigest()

    def _check_identity(self) -> None:
        if self.meta.get("version", 0) > FORMAT_VERSION:
            raise OptimizerError(f"{self.dir}/run.json has format {self.meta.get('version')}, newer than this tracekit; upgrade")
        if self.meta.get("target") != str(self.target.root):
            raise OptimizerError(f"run {self.run_id!r} in {self.home} belongs to target {self.meta.get('target')}, not "
                                 f"{self.target.root}; use another --tag or --home")
        if self.meta.get("identity_hash") != self._identity_hash():
            old, new = self.meta.get("identity", {}), self.target.identity()
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise OptimizerError(
                f"run {self.run_id!r} was started with different settings ({', '.join(changed)}); its measurements would not "
                f"be comparable. Restore them, or start a new run with --tag NEW")

    def _check_registration(self) -> None:
        if "registration" not in self.meta:  # a run from before registrations: recorded now, as it stands
            self.meta["registration"] = {**registration(self.target, self.meta["fixed_hashes"], _now()),
                                         "recorded_on_resume": True}
            self.save_meta()
            return
        check_registration(self.run_id, self.meta["registration"], self.target)

    def _target_files(self) -> dict[str, bytes]:
        """The target's editable and fixed files, its program and tracekit.toml, as they are now."""
        t = self.target
        rels = list(t.editable) + list(t.fixed) + [p for p in (t.program, TOML_NAME) if p]
        return {rel: (t.root / rel).read_bytes() for rel in dict.fromkeys(rels) if (t.root / rel).is_file()}

    def _edited_since_start(self) -> list[str]:
        """Files of the target that differ from the run's recorded baseline commit."""
        assert self.repo is not None
        base = self.meta["baseline_commit"]
        return sorted(rel for rel, data in self._target_files().items() if self.repo.read(base, rel) != data)

    def _reregister_after_failed_baseline(self, log: Any) -> bool:
        """A run whose baseline never succeeded, whose target was fixed since: start it again from the
        target as it is now (nothing was measured, so nothing is lost). True when it did."""
        assert self.ledger is not None and self.repo is not None
        if any(r["status"] == "baseline" for r in self.ledger.rows):
            return False
        if self.meta.get("target") != str(self.target.root):
            return False
        edited = self._edited_since_start()
        settings = self.meta.get("identity_hash") != self._identity_hash()
        if not edited and not settings:
            return False
        old = self.meta["baseline_commit"]
        baseline = self.repo.commit(self._target_files(), parent=old,
                                    message=f"tracekit: baseline of run {self.run_id}, again after a failed baseline")
        self.repo.update_ref(self.branch, baseline, self.repo.rev(self.branch) or old)
        t = self.target
        hashes = t.fixed_hashes()
        self.meta.update({"identity": t.identity(), "identity_hash": self._identity_hash(), "baseline_commit": baseline,
                          "fixed_hashes": hashes, "setup_done": False, "registration": registration(t, hashes, _now())})
        self.save_meta()
        if log:
            what = ", ".join(edited) + (" and settings" if settings and edited else "settings" if settings else "")
            log("warning", {"message": f"run {self.run_id!r} had no successful baseline and the target changed since "
                                       f"({what}): starting it again from the target as it is now"})
        return True

    def _warn_if_target_edited(self, log: Any) -> None:
        edited = self._edited_since_start()
        if edited and log:
            log("warning", {"message": f"the target's {', '.join(edited)} changed since run {self.run_id!r} started; "
                                       f"the run goes on from its own recorded files. To optimize the files as they are "
                                       f"now, start a new run: --tag {self.run_id}-2"})

    def _create(self) -> None:
        assert self.repo is not None
        t = self.target
        if self.repo.rev(self.branch):
            raise OptimizerError(f"branch tracekit/{self.run_id} already exists in {self.repo.git_dir} but this home has no "
                                 f"record of run {self.run_id!r}; use another --tag, or delete the branch "
                                 f"(git branch -D tracekit/{self.run_id}) if it is a leftover")
        files = self._target_files()
        head = None if self.repo.private else self.repo.rev("HEAD")
        baseline = self.repo.commit(files, parent=head, message=f"tracekit: baseline of run {self.run_id}")
        self.repo.update_ref(self.branch, baseline, "0" * 40)
        hashes, now = t.fixed_hashes(), _now()
        self.meta = {
            "version": FORMAT_VERSION, "run_id": self.run_id, "target": str(t.root), "identity": t.identity(),
            "identity_hash": self._identity_hash(), "git_dir": str(self.repo.git_dir), "private_repo": self.repo.private,
            "branch": self.branch, "baseline_commit": baseline, "fixed_hashes": hashes,
            "created_at": now, "setup_done": False, "registration": registration(t, hashes, now),
        }
        self.save_meta()

    def save_meta(self) -> None:
        _atomic_json(self.dir / "run.json", self.meta, anchor=self.dir)

    def _prepare_base(self, log: Any) -> None:
        if self.meta.get("setup_done") and self.base.is_dir() and not self.base.is_symlink():
            return
        remove_tree(self.base)
        tmp = self.dir / "base.tmp"
        remove_tree(tmp)
        copy_target(self.target.root, tmp, self.target.exclude, self.target.sealed)
        assert self.repo is not None
        with Dir.open(tmp) as d:
            for rel in list(self.target.editable) + list(self.target.fixed):
                data = self.repo.read(self.meta["baseline_commit"], rel)
                if data is not None:
                    d.write(rel, data)
        if self.target.setup:
            if log:
                log("setup", {"command": self.target.setup})
            env = dict(os.environ)
            env.update(self.target.env)
            # `python` is the interpreter running tracekit, as inside the sandbox
            env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
            for var in ("TRACEPARENT", "TRACESTATE"):
                env.pop(var, None)
            remove_tree(self.dir / "setup.log")
            log_fd = os.open(self.dir / "setup.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with os.fdopen(log_fd, "w") as out:
                try:
                    proc = subprocess.run(self.target.setup, shell=True, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          timeout=self.target.setup_budget_s)
                except subprocess.TimeoutExpired:
                    raise OptimizerError(f"setup {self.target.setup!r} ran past {self.target.setup_budget_s:g} s; see "
                                         f"{self.dir / 'setup.log'}") from None
            if proc.returncode != 0:
                tail = (self.dir / "setup.log").read_text(errors="replace")[-2000:]
                raise OptimizerError(f"setup {self.target.setup!r} failed with exit code {proc.returncode}:\n{tail}")
        leaked = [rel for rel in self.target.sealed if os.path.lexists(tmp / rel)]
        if leaked:
            raise OptimizerError(f"the base workspace holds the sealed holdout files {leaked}"
                                 + (f" (setup {self.target.setup!r} wrote them)" if self.target.setup else "")
                                 + ": every run and the proposer would see them. Make setup leave them out")
        hashes = self.target.fixed_hashes(tmp)
        if hashes != self.meta["fixed_hashes"]:
            bad = sorted(k for k in hashes if hashes[k] != self.meta["fixed_hashes"].get(k))
            raise OptimizerError(f"fixed files changed since the run started: {bad}; restore them or start a new --tag")
        os.replace(tmp, self.base)
        self.meta["setup_done"] = True
        self.save_meta()

    # -- git state -----------------------------------------------------------------------------

    def branch_head(self) -> str:
        assert self.repo is not None
        head = self.repo.rev(self.branch)
        if head is None:
            raise OptimizerError(f"branch tracekit/{self.run_id} disappeared from {self.repo.git_dir}")
        return head

    def exp_ref(self, experiment_id: str) -> str:
        return f"refs/tracekit/{self.run_id}/{experiment_id}"

    def files_at(self, commit: str) -> dict[str, str]:
        assert self.repo is not None
        return {rel: self.repo.read_text(commit, rel) for rel in self.target.editable}

    def move_branch(self, new: str, expected: str) -> None:
        assert self.repo is not None
        try:
            self.repo.update_ref(self.branch, new, expected)
        except GitError as exc:
            raise OptimizerError(f"branch tracekit/{self.run_id} moved under the optimizer ({exc}); is another process "
                                 "committing to it?") from exc

    # -- workspaces ------------------------------------------------------------------------------

    def workspace(self, experiment_id: str, files: dict[str, str]) -> Path:
        """A copy of base/ (hard links; the sandbox copies it again) with the candidate's editable files.

        Written by `_safefs`: a link anywhere in the copy (one the target holds, or one planted since)
        is never followed, and a file is replaced by rename, never written through its hard link into base/.
        """
        ws = own_dir(self.dir / "work", anchor=self.dir) / experiment_id
        remove_tree(ws, anchor=self.dir)
        copy_tree(self.base, ws, hardlink=True)
        try:
            with Dir.open(ws, anchor=self.dir) as d:
                for rel, text in files.items():
                    d.write(rel, text)
        except UnsafePath as exc:
            raise OptimizerError(f"cannot write the candidate into its workspace {ws}: {exc}. Something replaced part of "
                                 f"{self.base} with a link; delete {self.base} (it is rebuilt from the target) and start "
                                 "again: the experiment is run again under the same id") from None
        hashes = self.target.fixed_hashes(ws)
        if hashes != self.meta["fixed_hashes"]:
            bad = sorted(k for k in hashes if hashes[k] != self.meta["fixed_hashes"].get(k))
            raise OptimizerError(f"fixed files {bad} in the base workspace no longer match their recorded hashes; "
                                 f"{self.base} was altered. Delete it (it is rebuilt) and restart")
        return ws

    def drop_workspace(self, experiment_id: str) -> None:
        try:
            remove_tree(self.dir / "work" / experiment_id, anchor=self.dir)
        except (OSError, OptimizerError):
            pass  # a workspace left behind (or behind a planted link) is removed before its id is used again
