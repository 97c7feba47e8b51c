"""The sandbox's seccomp filter: system calls a candidate never needs, denied with EPERM.

    bpf = program()            # bytes of a classic BPF program (libseccomp's export_bpf), or None
    describe()                 # {"denied": [...], "library": "pyseccomp 0.1.2 / libseccomp 2.5.4"}

Built with libseccomp through its Python bindings (the official `seccomp` module when installed,
else `pyseccomp`, the ctypes binding with the same API) and exported as BPF once per process. bwrap
loads it with `--seccomp FD` right before it executes the sandbox's init; the unshare backend's init
loads it itself after setting up the mounts. It applies to the init and everything the candidate
starts; the list follows what Docker's default profile denies to unprivileged containers.

Why each group is denied:
- keyrings (`keyctl`, `add_key`, `request_key`): the kernel keyring is shared per session and per
  user; a run has no business reading or planting keys.
- tracing and introspection (`ptrace`, `process_vm_readv/writev`, `kcmp`, `perf_event_open`, `bpf`,
  `userfaultfd`, `fanotify_init`, `lookup_dcookie`): a candidate could freeze or steer the
  sandbox's init (and forge its status line), or reach kernel attack surface.
- mounts and namespaces (`mount`, `umount2`, `pivot_root`, `move_mount`, `open_tree`, `fsopen`,
  `fsconfig`, `fsmount`, `fspick`, `mount_setattr`, `unshare`, `setns`, `clone` with a namespace
  flag; `clone3` answers ENOSYS so libc falls back to `clone`, whose flags the filter can read).
- the machine (`kexec_*`, `*_module`, `reboot`, `swapon/swapoff`, `acct`, `quotactl`, `syslog`,
  clock setting, `iopl/ioperm`, `open_by_handle_at`, `io_uring_*`, ...).
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile
from typing import Any

DENIED: tuple[str, ...] = (
    # keyrings
    "keyctl", "add_key", "request_key",
    # tracing, introspection, kernel programs
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "perf_event_open", "bpf", "userfaultfd",
    "fanotify_init", "lookup_dcookie", "name_to_handle_at", "open_by_handle_at",
    # mounts and namespaces
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "unshare", "setns", "chroot",
    # the machine
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "stime", "iopl", "ioperm", "vhangup", "uselib", "ustat", "sysfs", "_sysctl",
    "nfsservctl", "get_kernel_syms", "query_module", "vm86", "vm86old", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "sethostname", "setdomainname",
)
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET


def _bindings() -> Any:
    try:
        import seccomp  # libseccomp's own bindings (Debian: python3-seccomp)

        return seccomp
    except ImportError:
        import pyseccomp

        return pyseccomp


def program() -> bytes | None:
    """The filter as classic BPF bytes; None when libseccomp is unavailable (checked and reported)."""
    built = _build()
    return built[0] if built else None


@functools.lru_cache(maxsize=1)
def _build() -> tuple[bytes, tuple[str, ...]] | None:
    try:
        sc = _bindings()
        f = sc.SyscallFilter(defaction=sc.ALLOW)
    except Exception:  # no libseccomp on this machine (RuntimeError, OSError, ImportError)
        return None
    deny = sc.ERRNO(errno.EPERM)
    added = []
    for name in DENIED:
        try:
            f.add_rule(deny, name)
        except (RuntimeError, ValueError, OSError):  # not a system call on this architecture
            continue
        added.append(name)
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for bit in range(32):
        flag = 1 << bit
        if NAMESPACE_FLAGS & flag:
            f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read(), tuple(added)


def describe() -> dict[str, Any]:
    """What the filter denies and which library built it (for `tracekit sandbox check`)."""
    try:
        sc = _bindings()
        lib = f"{sc.__name__} {getattr(sc, '__version__', '')}".strip()
    except ImportError as exc:
        return {"available": False, "why": f"no libseccomp bindings ({exc}); pip install pyseccomp"}
    built = _build()
    if built is None:
        return {"available": False, "why": "libseccomp (libseccomp2) is not installed; apt-get install libseccomp2"}
    bpf, added = built
    return {"available": True, "library": lib, "instructions": len(bpf) // 8,
            "denied": [*added, "clone3 (ENOSYS)", "clone with namespace flags"]}


def write_to_fd() -> int | None:
    """A readable fd holding the BPF program (for bwrap's --seccomp), or None without a filter."""
    bpf = program()
    if bpf is None:
        return None
    r, w = os.pipe()
    if len(bpf) > 65536:  # a pipe holds 64 KiB; the filter is a few KiB
        os.close(r)
        os.close(w)
        raise OSError(errno.E2BIG, "seccomp filter larger than a pipe buffer")
    os.write(w, bpf)
    os.close(w)
    return r
