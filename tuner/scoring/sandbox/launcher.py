"""The sandbox's launcher (pure: standard library only), the script `run_untrusted` starts for each sample.

Run as `python -I -B launcher.py --launch PLAN`, first inside the namespaces and as root where that
applies: it sets up the layers the OS allows (see `tuner.scoring.sandbox`), forks the sample with its limits
and uid, waits for it, cleans up and reports to the evaluator as JSON lines on a pipe. It is
single-threaded, so fork() is safe here. Isolated mode leaves this directory off `sys.path` and an
installed `tuner` may be another version, so run as a script it imports no `tuner` module: it loads
`common.py` from beside itself by path.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import json
import os
import resource
import signal
import stat
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import PurePosixPath
from types import ModuleType
from typing import Any

_SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_SCRATCH_INODES = 4096
_BACKSTOP_SECONDS = 2.0  # the launcher kills the sample this long after the evaluator should have

# Linux constants (linux/sched.h, linux/mount.h, linux/prctl.h).
_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38


def _load_beside(name: str) -> ModuleType:
    """The module `name`.py from this file's directory, loaded by path (the launcher run as a script has no package)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_sandbox_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look a class's module up while building it
    spec.loader.exec_module(module)
    return module


if __package__:
    from tuner.scoring.sandbox import common
else:
    common = _load_beside("common")


def _launch(plan: dict[str, Any]) -> None:
    """Set up what the OS allows, start the sample, wait for it, clean up and report to the evaluator."""
    report_fd = plan["report_fd"]
    os.set_inheritable(report_fd, False)
    os.umask(0o022)
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the evaluator gone, no sample goes on
        limits = common.SandboxLimits(**plan["limits"])
        workdir, uid = plan["workdir"], plan["uid"]
        host = plan["host_namespaces"]
        layers = ["process", "limits"]
        in_pid_namespace = os.getpid() == 1
        if in_pid_namespace:
            layers.append("pid")
        if common.namespace_inode("net") == host["net"]:
            _unshare(_CLONE_NEWNET)
        if common.namespace_inode("net") not in (None, host["net"]):
            layers.append("network")
        if common.namespace_inode("mnt") == host["mnt"]:
            _unshare(_CLONE_NEWNS)
        own_mounts = host["mnt"] is not None and common.namespace_inode("mnt") not in (None, host["mnt"])
        if own_mounts and _prepare_filesystem(workdir, uid, limits.scratch_bytes()):
            layers.append("filesystem")
        elif uid is not None:
            for path in (workdir, os.path.join(workdir, common.PROGRAM_NAME)):
                os.chown(path, uid, uid)
        if uid is not None and not _can_reach(uid, [*_interpreter_paths(), workdir]):
            uid = None  # the interpreter is out of that uid's reach: keep root rather than fail every sample
        if uid is not None:
            layers.append("user")
        if not in_pid_namespace:
            _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # detached descendants come back to us, not to init
        _report(report_fd, layers=layers)
        sample = os.fork()
        if sample == 0:
            _become_sample(plan, limits, uid, report_fd)
        returncode = _wait_for(sample, limits.wall_seconds + _BACKSTOP_SECONDS)
        if not in_pid_namespace:
            _kill_leftovers(uid)  # in a PID namespace the kernel does it when we exit
        _report(report_fd, returncode=returncode)
    except (OSError, ValueError) as error:
        _report(report_fd, error=f"{type(error).__name__}: {error}")
    os._exit(0)


def _become_sample(plan: dict[str, Any], limits: common.SandboxLimits, uid: int | None, report_fd: int) -> None:
    """In the forked child: set the limits, drop to `uid`, and exec the program; never returns."""
    try:
        for ignored in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; exec would keep that
            signal.signal(ignored, signal.SIG_DFL)
        processes = limits.processes
        if uid is None and not plan["user_namespace"]:
            processes += sum(owner == os.getuid() for owner in common.process_uids().values())  # counted per uid
        _set_limit(resource.RLIMIT_CORE, 0, 0)
        _set_limit(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1)  # SIGXCPU, then SIGKILL
        _set_limit(resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes)
        _set_limit(resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes)
        _set_limit(resource.RLIMIT_NPROC, processes, processes)
        if uid is not None:
            _drop_privileges(uid)
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it
        os.chdir(plan["workdir"])
        os.execve(sys.executable, [sys.executable, "-I", "-B", common.PROGRAM_NAME], plan["environment"])
    except (OSError, ValueError) as error:
        _report(report_fd, error=f"could not start the sample: {type(error).__name__}: {error}")
    finally:
        os._exit(127)


def _wait_for(sample: int, seconds: float) -> int:
    """Reap every process that ends (we are init or subreaper) until `sample` does; kill it on time-out or SIGTERM."""

    def stop_sample(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(sample, signal.SIGKILL)

    signal.signal(signal.SIGALRM, stop_sample)
    signal.signal(signal.SIGTERM, stop_sample)  # the evaluator's timeout, where it cannot kill a whole namespace
    signal.setitimer(signal.ITIMER_REAL, seconds)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == sample:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return os.waitstatus_to_exitcode(status)


def _kill_leftovers(uid: int | None) -> None:
    """Without a PID namespace: kill every process of the sample's uid, then whatever descendant we still have."""
    if uid is not None:
        for _ in range(3):
            killer = os.fork()
            if killer == 0:
                try:
                    _drop_privileges(uid)
                    os.kill(-1, signal.SIGKILL)  # every process of that uid, in one pass that forks cannot race
                finally:
                    os._exit(0)
            os.waitpid(killer, 0)
    for _ in range(100):
        children = _children()
        if not children:
            return
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _children() -> list[int]:
    """The pids whose parent is this process, read from /proc."""
    me = os.getpid()
    children = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:
            children.append(int(name))
    return children


def _prepare_filesystem(workdir: str, uid: int | None, scratch_bytes: int) -> bool:
    """In our own mount namespace: fresh tmpfs for the working and scratch directories, the interpreter reachable.

    Returns False, having changed nothing, where mount propagation cannot be made private.
    """
    try:
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing below may propagate to the host
    except OSError:
        return False
    with open(os.path.join(workdir, common.PROGRAM_NAME), "rb") as handle:
        program = handle.read()
    scratch = [path for path in _SCRATCH_DIRS if os.path.isdir(path) and not os.path.islink(path)]
    interpreter = _interpreter_paths()
    blocked = {_blocked_ancestor(path) for path in [*interpreter, workdir]} - {None, "/"}
    covers = _outermost(path for path in blocked if path is not None and not _under(path, scratch))
    handles = {
        path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in interpreter if _under(path, [*scratch, *covers])
    }
    tmpfs = _MS_NOSUID | _MS_NODEV
    for directory in scratch:
        _mount("tmpfs", directory, "tmpfs", tmpfs, f"size={scratch_bytes},nr_inodes={_SCRATCH_INODES},mode=1777")
    for directory in covers:
        _mount("tmpfs", directory, "tmpfs", tmpfs, "size=1m,nr_inodes=1024,mode=0755")
    for path, handle in handles.items():
        if stat.S_ISDIR(os.fstat(handle).st_mode):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "ab").close()
        _mount(f"/proc/self/fd/{handle}", path, None, _MS_BIND | _MS_REC)
        os.close(handle)
    owner = "" if uid is None else f",uid={uid},gid={uid}"
    os.makedirs(workdir, exist_ok=True)
    _mount("tmpfs", workdir, "tmpfs", tmpfs, f"size={scratch_bytes},nr_inodes={_SCRATCH_INODES},mode=0700{owner}")
    program_path = os.path.join(workdir, common.PROGRAM_NAME)
    with open(program_path, "wb") as handle:
        handle.write(program)
    if uid is not None:
        os.chown(program_path, uid, uid)
    return True


def _interpreter_paths() -> list[str]:
    """The outermost directories and files the interpreter needs to start: binary, prefixes, shared library."""
    named = (sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    paths = {path for name in named if name for path in (name, os.path.realpath(name))}
    library = sysconfig.get_config_var("LIBDIR")
    if library:
        paths.add(os.path.realpath(library))
    return _outermost(path for path in paths if os.path.exists(path))


def _outermost(paths: Iterable[str]) -> list[str]:
    """The given paths less those inside another of them."""
    unique = sorted(set(paths))
    return [path for path in unique if not any(other != path and _under(path, [other]) for other in unique)]


def _under(path: str, directories: list[str]) -> bool:
    """Whether `path` is one of `directories` or inside one."""
    return any(path == directory or path.startswith(directory.rstrip("/") + "/") for directory in directories)


def _blocked_ancestor(path: str) -> str | None:
    """The outermost directory above `path` that others may not enter (no o+x), or None."""
    for ancestor in reversed(PurePosixPath(path).parents):
        if not os.stat(ancestor).st_mode & stat.S_IXOTH:
            return str(ancestor)
    return None


def _can_reach(uid: int, paths: list[str]) -> bool:
    """Whether `uid` can read (and enter, or run, where that applies) each of `paths`, tried in a forked child."""
    probe = os.fork()
    if probe == 0:
        try:
            _drop_privileges(uid)
            executables = {sys.executable, os.path.realpath(sys.executable)}
            for path in paths:
                mode = os.R_OK | (os.X_OK if os.path.isdir(path) or path in executables else 0)
                if not os.access(path, mode):
                    os._exit(1)
            os._exit(0)
        finally:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(probe, 0)[1]) == 0


def _drop_privileges(uid: int) -> None:
    """Become `uid` (and gid `uid`) for good, with no supplementary groups."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _set_limit(which: int, soft: int, hard: int) -> None:
    """Set a resource limit, keeping below an existing hard limit that we may not raise."""
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    resource.setrlimit(which, (min(soft, hard), hard))


def _report(report_fd: int, **fields: Any) -> None:
    """Tell the evaluator something, as one JSON line on the report pipe."""
    with contextlib.suppress(OSError):
        os.write(report_fd, (json.dumps(fields) + "\n").encode())


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> bool:
    """unshare(2) through ctypes (os.unshare arrived in Python 3.12); False where refused."""
    return _libc().unshare(ctypes.c_int(flags)) == 0


def _prctl(option: int, value: int) -> bool:
    """prctl(2) with one argument; False where refused."""
    return _libc().prctl(ctypes.c_int(option), ctypes.c_ulong(value), 0, 0, 0) == 0


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2) through ctypes: the mount binary resolves /proc/self/fd sources and would bind the wrong path."""
    encoded = [None if text is None else text.encode() for text in (source, target, fstype, data)]
    if _libc().mount(encoded[0], encoded[1], encoded[2], ctypes.c_ulong(flags), encoded[3]) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {target}: {os.strerror(error)}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--launch":
        _launch(json.loads(sys.argv[2]))
    sys.exit(f"usage: {sys.argv[0]} --launch PLAN (started by tuner.scoring.sandbox.run_untrusted)")
