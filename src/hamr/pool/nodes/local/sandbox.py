"""Contain a worker process: Linux Landlock (through ctypes), no new privileges, no capabilities.

`restrict(policy)` is called by the process on itself, once, before it reads any work. After it
the process (and whatever it starts, e.g. the C compiler) can read and execute only the paths in
`policy.read`, can write only under `policy.write`, can open no TCP connection and bind no TCP
port, can signal no process and reach no abstract unix socket outside its own sandbox, and holds
no capability (so, even as root, it can load no kernel module, mount nothing, and ptrace nothing).
Landlock still applies to root; file ownership does not matter to it.

`worker_policy(tenant_dir)` is the one policy the pool's job workers run under: the system and
Python installation read-only, the tenant's staging (hamr/pool/nodes/local/staging.py) and nothing else of the
pool's data directory. `die_with_parent(pid)` makes the kernel kill the process when its parent
dies. docs/pool.md ("Sandboxed workers").
"""

from __future__ import annotations

import ctypes
import errno
import functools
import glob
import os
import platform
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hamr.errors import HamrError

SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(platform.machine())
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522
LABEL = "sandbox"  # the node label that says how its job workers are contained (describe())

# Landlock filesystem access rights (linux/landlock.h), by the ABI version that added them
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = (
    EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
)  # the rights a rule on a file (not a folder) may carry
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

READ = EXECUTE | READ_FILE | READ_DIR
WRITE = (
    READ
    | WRITE_FILE
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SYM
    | MAKE_FIFO
    | MAKE_SOCK
    | REFER
    | TRUNCATE
)
DEVICE = READ_FILE | WRITE_FILE | IOCTL_DEV

SYSTEM_READ = [
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/opt/rocm",
    "/sys",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/OpenCL",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/self",
]
DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/dri", "/dev/kfd", "/dev/nvidia*"]


class SandboxError(HamrError):
    """The process could not be contained as asked."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass
class Policy:
    """What a contained process may read (and execute), and where it may write (read included)."""

    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)


@functools.cache
def _libc():
    return ctypes.CDLL(None, use_errno=True)


@functools.cache
def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where there is none (not Linux, too old, or disabled)."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(
        SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)
    )
    return max(int(version), 0)


def available() -> str:
    """'' where workers can be contained here, else why not (one line)."""
    if not sys.platform.startswith("linux"):
        return f"Landlock is Linux's, and this is {sys.platform}"
    if landlock_abi() < 1:
        return f"this kernel ({platform.release()}) has no Landlock, or it is disabled (boot with lsm=...,landlock)"
    return ""


def describe() -> str:
    """One word or line for status: how this host contains job workers."""
    abi = landlock_abi()
    return f"landlock (ABI {abi})" if abi else f"none: {available()}"


def containment_line() -> str:
    """What `hamr pool up` and `hamr agent` say at start about their job workers."""
    why = available()
    if why:
        return f"warning: jobs are NOT contained: {why}; a tenant's job can read what this process can (docs/pool.md)"
    return f"jobs run contained (Landlock ABI {landlock_abi()}): each tenant's worker sees only its tenant's files"


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl: we were reparented
        os._exit(1)


def python_paths(protected: list[Path]) -> list[str]:
    """The Python installation and import path, less any folder that holds a protected one."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path}
    keep = []
    for root in sorted(r for r in roots if r and os.path.isabs(r)):
        resolved = Path(root).resolve()
        if any(p == resolved or resolved in p.parents for p in protected):
            continue  # e.g. a checkout that also holds the pool's data: its files are not the worker's to read
        keep.append(root)
    return keep


def worker_policy(tenant_dir: Path, protected: list[Path]) -> Policy:
    """The policy of a job worker of one tenant: its staging folders (hamr/pool/nodes/local/staging.py) and the system.

    `protected`: the folders no rule may open wholesale (the pool's data directory, an agent's cache)."""
    from hamr.format.signing import trusted_key_files
    from hamr.pool.nodes.local.staging import Staging

    staging = Staging.at(tenant_dir)
    devices = [p for pattern in DEVICES for p in glob.glob(pattern)]
    keys = [str(path) for path in trusted_key_files()]  # public keys: a worker checks signed files itself
    return Policy(
        read=SYSTEM_READ + python_paths([Path(p).resolve() for p in protected]) + [str(staging.inbox)] + keys,
        write=[str(staging.outbox), str(staging.cache), str(staging.tmp)],
        devices=devices,
    )


def restrict(policy: Policy) -> int:
    """Contain this process (and its future children) to `policy`; returns the Landlock ABI used.

    SandboxError where Landlock is unavailable or a step fails: the caller decides whether to go on."""
    why = available()
    if why:
        raise SandboxError(why)
    abi = min(landlock_abi(), 7)
    libc = _libc()
    handled_fs = FS_RIGHTS_BY_ABI.get(abi, FS_RIGHTS_BY_ABI[5])
    attr = _RulesetAttr(
        handled_fs,
        NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0,
    )
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise SandboxError(f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}")
    try:
        for paths, rights in ((policy.read, READ), (policy.write, WRITE), (policy.devices, DEVICE)):
            for path in paths:
                _allow(libc, ruleset, path, rights & handled_fs)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise SandboxError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
        if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            raise SandboxError(f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    drop_capabilities(libc)
    return abi


def _allow(libc, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not on this host (e.g. /lib32, /dev/kfd)
    try:
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS
        rule = _PathBeneathAttr(rights, fd)
        if libc.syscall(
            SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)
        ):
            raise SandboxError(f"landlock_add_rule({path}) failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def drop_capabilities(libc=None) -> None:
    """Give up every capability, for good (the bounding set too, so nothing exec'd gets one back)."""
    libc = libc or _libc()
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:
                break  # past the last capability
            if ctypes.get_errno() == errno.EPERM:
                break  # without CAP_SETPCAP (not root): nothing to drop
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if SYS_CAPSET is None:
        return
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: none, twice (the two 32-bit halves)
    if libc.syscall(SYS_CAPSET, ctypes.byref(header), ctypes.byref(data)) != 0:
        raise SandboxError(f"capset failed: {os.strerror(ctypes.get_errno())}")


__all__ = [
    "LABEL",
    "Policy",
    "SandboxError",
    "available",
    "containment_line",
    "describe",
    "die_with_parent",
    "drop_capabilities",
    "landlock_abi",
    "restrict",
    "worker_policy",
]
