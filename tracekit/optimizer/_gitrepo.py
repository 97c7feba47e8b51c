"""Git plumbing for the optimizer: commits and branches without touching anyone's checkout.

Candidates become commits built with a private index file (`read-tree`, `update-index`,
`write-tree`, `commit-tree`), so the user's working tree, index and current branch are never
changed, and several workers can build commits at once. A keep moves the run's branch with a
compare-and-swap `update-ref`; every experiment's candidate also gets a ref under
`refs/tracekit/<run>/<experiment>` so discarded diffs stay reachable.

Which repository: the target folder's own repository when the folder is its root; otherwise
(a plain folder, or a subfolder of a bigger repository) a private bare repository under the run's
home, `<home>/optimizer/repo.git`, seeded with a snapshot of the target's files.

    repo = GitRepo.for_target(target_root, home)
    c = repo.commit({"train.py": b"..."}, parent=base, message="exp 7")
    repo.update_ref("refs/heads/tracekit/main", c, expected_old=base)
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .._errors import OptimizerError
from ._safefs import Dir

IDENTITY = {
    "GIT_AUTHOR_NAME": "tracekit", "GIT_AUTHOR_EMAIL": "tracekit@localhost",
    "GIT_COMMITTER_NAME": "tracekit", "GIT_COMMITTER_EMAIL": "tracekit@localhost",
}


class GitError(OptimizerError):
    """A git command failed."""


def _git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(IDENTITY)
    env["GIT_TERMINAL_PROMPT"] = "0"
    if extra:
        env.update(extra)
    return env


def git(*args: str, cwd: Path | None = None, git_dir: Path | None = None, input: bytes | None = None,
        env: Mapping[str, str] | None = None, check: bool = True) -> str:
    cmd = ["git"]
    if git_dir is not None:
        cmd += ["--git-dir", str(git_dir)]
    cmd += list(args)
    proc = subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, env=_git_env(env))
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace").strip()


class GitRepo:
    """A repository seen through its git dir; paths given to methods are relative to the target."""

    def __init__(self, git_dir: Path, prefix: str = "", private: bool = False) -> None:
        self.git_dir = Path(git_dir)
        self.prefix = prefix.strip("/")
        self.private = private

    def __repr__(self) -> str:
        return f"GitRepo({str(self.git_dir)!r}, prefix={self.prefix!r})"

    def g(self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None, check: bool = True) -> str:
        if self.private and self.git_dir.is_symlink():  # planted since: git would write its objects through it
            raise GitError(f"the optimizer's repository {self.git_dir} was replaced by a symbolic link; remove the link "
                           "(the run's commits are in the repository it replaced, if you moved it back)")
        return git(*args, git_dir=self.git_dir, input=input, env=env, check=check)

    def full(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    # -- construction ------------------------------------------------------------------------

    @staticmethod
    def for_target(root: Path, home: Path) -> "GitRepo":
        root = root.resolve()
        top = git("rev-parse", "--show-toplevel", cwd=root, check=False)
        if top and Path(top).resolve() == root:
            gd = Path(git("rev-parse", "--absolute-git-dir", cwd=root))
            return GitRepo(gd)
        bare = home / "optimizer" / "repo.git"
        if bare.is_symlink():
            raise GitError(f"{bare} is a symbolic link; the optimizer keeps its private repository only under --home. "
                           "Remove the link (or pass --home with the real folder)")
        if not (bare / "HEAD").exists():
            bare.parent.mkdir(parents=True, exist_ok=True)
            git("init", "--bare", "-q", str(bare))
        return GitRepo(bare, private=True)

    def exclude(self, pattern: str) -> None:
        """Add an ignore pattern to .git/info/exclude (never touches tracked files)."""
        if self.private:
            return
        with Dir.open(self.git_dir / "info", create=True, anchor=self.git_dir) as info:
            try:
                text = info.read("exclude").decode("utf-8", errors="replace")
            except FileNotFoundError:
                text = ""
            if pattern not in text.splitlines():
                info.write("exclude", text + ("" if text.endswith("\n") or not text else "\n") + pattern + "\n")

    # -- reading -------------------------------------------------------------------------------

    def rev(self, ref: str) -> str | None:
        out = self.g("rev-parse", "--verify", "-q", ref + "^{commit}", check=False)
        return out or None

    def read(self, commit: str, rel: str) -> bytes | None:
        proc = subprocess.run(["git", "--git-dir", str(self.git_dir), "cat-file", "blob", f"{commit}:{self.full(rel)}"],
                              capture_output=True, env=_git_env())
        return proc.stdout if proc.returncode == 0 else None

    def read_text(self, commit: str, rel: str) -> str:
        data = self.read(commit, rel)
        if data is None:
            raise GitError(f"{rel} is not in commit {commit[:12]}")
        return data.decode("utf-8", errors="replace")

    def tree(self, commit: str) -> str:
        return self.g("rev-parse", commit + "^{tree}")

    # -- writing ------------------------------------------------------------------------------

    def commit(self, files: Mapping[str, bytes], parent: str | None, message: str) -> str:
        """A new commit: `parent`'s tree with `files` (relative to the target) written in."""
        with tempfile.TemporaryDirectory(prefix="tracekit-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                self.g("read-tree", parent, env=env)
            else:
                self.g("read-tree", "--empty", env=env)
            for rel, data in sorted(files.items()):
                blob = self.g("hash-object", "-w", "--stdin", input=data)
                self.g("update-index", "--add", "--cacheinfo", f"100644,{blob},{self.full(rel)}", env=env)
            tree = self.g("write-tree", env=env)
        if parent and tree == self.tree(parent):
            return parent
        args = ["commit-tree", tree, "-m", message]
        if parent:
            args += ["-p", parent]
        return self.g(*args)

    def recommit(self, commit: str, parent: str, message: str) -> str:
        """A commit with `commit`'s tree on top of `parent` (a keep whose parent moved meanwhile)."""
        return self.g("commit-tree", self.tree(commit), "-p", parent, "-m", message)

    def update_ref(self, ref: str, new: str, expected_old: str | None = None) -> None:
        """Point `ref` at `new`; with `expected_old` only if it still points there (else GitError)."""
        args = ["update-ref", ref, new]
        if expected_old is not None:
            args.append(expected_old)
        self.g(*args)

    def set_ref(self, ref: str, new: str) -> None:
        self.g("update-ref", ref, new)
