"""Run untrusted generated code in a throwaway sandbox (pure: standard library only).

`run_untrusted` writes a program into a fresh temporary directory and runs it as
`python -I -B program.py` through a small launcher (this file run as a script). Layers of
protection, each applied where the OS allows it; `SandboxResult.layers` names those that held:

- process: always. A separate process in its own session and process group, stdin from
  /dev/null, a minimal environment, the temporary directory as cwd (removed afterwards). The
  evaluator enforces the wall time and kills the whole group when the run ends.
- limits: always. RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NPROC and RLIMIT_CORE=0, set in
  the sample's process before exec; the launcher stops the sample at the wall time as a backstop.
- pid: a new PID namespace (util-linux `unshare --pid --fork --kill-child --mount-proc`). The
  launcher is its init: it reaps orphans, and when the sample ends the kernel kills every process
  left in the namespace, detached or not. Without it the launcher is a child subreaper that kills
  what it collects, and every process of the sample's uid is killed at the end.
- network: a new network namespace (a loopback that is down), so no socket reaches anything,
  127.0.0.1 included. From `unshare --net`, else `unshare(CLONE_NEWNET)` through ctypes.
- filesystem: a new mount namespace (from `unshare`, else ctypes) with mount propagation made
  private first. The working directory, /tmp, /var/tmp and /dev/shm are fresh small tmpfs, so the
  sample writes nothing to disk and leaves nothing behind. A directory on the interpreter's path
  that the sample's user could not enter (pyenv under /root, mode 700) is covered by an empty
  tmpfs into which only the interpreter is bind-mounted, at the same path.
- user: when the evaluator runs as root (which ignores RLIMIT_NPROC, may write anywhere and may
  signal anything), the sample runs under a fresh unused uid and gid from `SANDBOX_UIDS`, without
  supplementary groups, with no_new_privs and a parent-death signal. A fresh uid per run keeps
  concurrent samples apart: RLIMIT_NPROC and the final sweep concern this sample alone. Applies
  only where that uid can reach the interpreter (the filesystem layer sees to it on pyenv).

As root on Linux with util-linux (this project's machines and CI) every layer applies. As
non-root, `unshare --user --map-root-user` gives the namespaces where unprivileged user
namespaces are allowed, and the sample keeps the evaluator's uid. Not covered: the address-space
limit is per process, so a sample may hold up to `processes x memory_bytes` (a cgroup would cap
the sum), and Unix sockets on the filesystem stay reachable where their permissions allow.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import math
import os
import random
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

STATUSES = ("passed", "failed", "timeout", "killed")
LAYERS = ("process", "limits", "pid", "network", "filesystem", "user")
PROGRAM_NAME = "program.py"
# Fresh uids (and gids) for samples when the evaluator is root: far above the ranges that
# distributions hand out (system < 1000, users < 60000, systemd dynamic users < 65535).
SANDBOX_UIDS = range(1_500_000_000, 1_501_000_000)

_SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin"
_SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_SCRATCH_INODES = 4096
_DRAIN_SECONDS = 1.0  # how long output is still read after the run ended
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


@dataclass(frozen=True)
class SandboxLimits:
    """What one sample may use before it is stopped."""

    wall_seconds: float = 10.0
    """Wall-clock seconds from start to end; past them the sample is killed and scored 'timeout'."""
    cpu_seconds: int = 10
    """CPU seconds per process (RLIMIT_CPU); past them the kernel kills the process."""
    memory_bytes: int = 1 << 30
    """Address space per process (RLIMIT_AS): 1 GiB."""
    file_bytes: int = 16 << 20
    """Largest file a process may write (RLIMIT_FSIZE): 16 MiB."""
    processes: int = 64
    """Processes and threads the sample may have at once (RLIMIT_NPROC of its own uid)."""
    output_bytes: int = 64 << 10
    """Stdout and stderr kept, together: 64 KiB, the first and the last half when there is more."""

    def __post_init__(self) -> None:
        if not (isinstance(self.wall_seconds, int | float) and math.isfinite(self.wall_seconds)):
            raise ValueError(f"wall_seconds must be a finite number, got {self.wall_seconds!r}")
        if self.wall_seconds <= 0:
            raise ValueError(f"wall_seconds must be positive, got {self.wall_seconds!r}")
        for name in ("cpu_seconds", "memory_bytes", "file_bytes", "processes", "output_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")

    def scratch_bytes(self) -> int:
        """Size of each tmpfs the sample may write (its directory, /tmp, /var/tmp, /dev/shm): four largest files."""
        return 4 * self.file_bytes


DEFAULT_LIMITS = SandboxLimits()


@dataclass(frozen=True)
class SandboxResult:
    """How one sample ended."""

    status: str
    """'passed' (exit code 0), 'failed' (another exit code, or the sandbox could not start it),
    'timeout' (stopped at the wall time) or 'killed' (ended by a signal: the CPU limit, or its own doing)."""
    returncode: int | None
    """The exit code, or minus the signal number; None after a timeout or when it never started."""
    seconds: float
    """Wall-clock seconds from start until every process of the sample was stopped."""
    output: str
    """Stdout and stderr interleaved, cut to SandboxLimits.output_bytes."""
    layers: tuple[str, ...] = ()
    """The isolation layers that held for this run (see the module docstring)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.seconds < 0:
            raise ValueError(f"seconds must not be negative, got {self.seconds}")
        unknown = [layer for layer in self.layers if layer not in LAYERS]
        if unknown:
            raise ValueError(f"layers must be among {', '.join(LAYERS)}, got {unknown!r}")

    @property
    def passed(self) -> bool:
        """Whether the program ran to the end and exited with code 0."""
        return self.status == "passed"


def run_untrusted(program: str, limits: SandboxLimits = DEFAULT_LIMITS) -> SandboxResult:
    """Run `program` as a Python script in a fresh sandbox and say how it ended.

    Whatever the program does is scored in the result; only a failure to start the launcher at all
    (no interpreter, no fork) raises OSError.
    """
    workdir = tempfile.mkdtemp(prefix="sandbox-")
    report_read, report_write = os.pipe()
    uid = _fresh_uid() if os.geteuid() == 0 else None
    try:
        with open(os.path.join(workdir, PROGRAM_NAME), "w", encoding="utf-8") as handle:
            handle.write(program)
        namespaces = _namespace_command()
        plan = {
            "workdir": workdir,
            "uid": uid,
            "limits": asdict(limits),
            "report_fd": report_write,
            "host_namespaces": {kind: _namespace_inode(kind) for kind in ("mnt", "net")},
            "user_namespace": "--user" in namespaces,
            "environment": {"PATH": _SEARCH_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"},
        }
        launcher = [sys.executable, "-I", "-B", os.path.abspath(__file__), "--launch", json.dumps(plan)]
        start = time.monotonic()
        process = subprocess.Popen(
            [*namespaces, *launcher],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(report_write,),
            start_new_session=True,
            cwd=workdir,
            env={"PATH": _SEARCH_PATH, "LANG": "C.UTF-8"},
        )
        os.close(report_write)
        report_write = -1
        output = _Output(limits.output_bytes)
        assert process.stdout is not None
        with process.stdout:
            try:
                timed_out = _watch(process.pid, process.stdout.fileno(), start + limits.wall_seconds, output)
                if timed_out and not namespaces:
                    _ask_to_stop(process.pid, _DRAIN_SECONDS)
            finally:
                _stop(process, uid)
            _drain(process.stdout.fileno(), time.monotonic() + _DRAIN_SECONDS, output)
        seconds = time.monotonic() - start
        report = _read_report(report_read)
    finally:
        for descriptor in (report_read, report_write):
            if descriptor >= 0:
                os.close(descriptor)
        _remove_tree(workdir)
    return _result(report, timed_out, process.returncode, seconds, output.text())


def _result(report: dict[str, Any], timed_out: bool, launcher_code: int, seconds: float, text: str) -> SandboxResult:
    """Score a run from the launcher's report, or from how the launcher itself ended when it could not report."""
    layers = tuple(layer for layer in report.get("layers", ()) if layer in LAYERS)
    if timed_out:
        return SandboxResult("timeout", None, seconds, text, layers)
    if "error" in report:
        return SandboxResult("failed", None, seconds, f"sandbox: {report['error']}\n{text}", layers)
    returncode = report.get("returncode", launcher_code)
    if returncode < 0:
        status = "killed"
    else:
        status = "passed" if returncode == 0 and "returncode" in report else "failed"
    return SandboxResult(status, returncode, seconds, text, layers)


@functools.cache
def _namespace_command() -> tuple[str, ...]:
    """The `unshare` prefix giving a sample its own PID, network and mount namespaces, or () where refused.

    Checked once per process by running the interpreter through it.
    """
    unshare = shutil.which("unshare", path=os.environ.get("PATH", "") + os.pathsep + _SEARCH_PATH)
    if unshare is None:
        return ()
    command = [unshare, "--pid", "--fork", "--kill-child", "--net", "--mount", "--mount-proc"]
    if os.geteuid() != 0:
        command[1:1] = ["--user", "--map-root-user"]
    try:
        probe = subprocess.run(
            [*command, sys.executable, "-I", "-c", "pass"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(command) if probe.returncode == 0 else ()


def _namespace_inode(kind: str) -> int | None:
    """The inode of this process's namespace of one kind ('mnt', 'net'), or None where /proc does not say."""
    try:
        return os.stat(f"/proc/self/ns/{kind}").st_ino
    except OSError:
        return None


def _process_uids() -> dict[int, int]:
    """The real uid of every live (not zombie) process in this PID namespace's /proc, by pid."""
    uids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="utf-8") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except (OSError, ValueError):
            continue  # gone meanwhile
        if fields.get("State", "").split()[:1] != ["Z"] and "Uid" in fields:
            uids[int(name)] = int(fields["Uid"].split()[0])
    return uids


def _fresh_uid() -> int:
    """A uid from SANDBOX_UIDS that no running process has (the same number serves as gid)."""
    in_use = set(_process_uids().values())
    chooser = random.SystemRandom()  # not the seeded global generator: parallel evaluators must differ
    while True:
        uid = chooser.choice(SANDBOX_UIDS)
        if uid not in in_use:
            return uid


def _watch(pid: int, output_fd: int, deadline: float, output: _Output) -> bool:
    """Collect output until the launcher `pid` ends (without reaping it) or the deadline passes; True on timeout."""
    try:
        exit_fd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        exit_fd = None  # no pidfd: poll
    try:
        readable = [output_fd] if exit_fd is None else [output_fd, exit_fd]
        while not _has_exited(pid):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            ready, _, _ = select.select(readable, [], [], remaining if exit_fd is not None else min(remaining, 0.05))
            if output_fd in ready:
                chunk = os.read(output_fd, 1 << 16)
                if chunk:
                    output.add(chunk)
                else:
                    readable.remove(output_fd)  # closed early: only wait for the exit
        return False
    finally:
        if exit_fd is not None:
            os.close(exit_fd)


def _has_exited(pid: int) -> bool:
    """Whether the child `pid` has ended, leaving it unreaped so its process group id cannot be reused yet."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _ask_to_stop(pid: int, seconds: float) -> None:
    """Without a PID namespace: SIGTERM has the launcher kill the sample and what it left; wait up to `seconds`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while not _has_exited(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _stop(process: subprocess.Popen[bytes], uid: int | None) -> None:
    """Kill the sample's process group and every process of its uid, when it had its own; reap the launcher."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if uid is not None:
        _kill_uid(uid)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process whose real uid is `uid`, round after round until none is left (forks race the sweep)."""
    for _ in range(200):
        leftovers = [pid for pid, owner in _process_uids().items() if owner == uid]
        if not leftovers:
            return
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


def _drain(output_fd: int, deadline: float, output: _Output) -> None:
    """Read what is left in the output pipe until every writer is gone or the deadline passes."""
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([output_fd], [], [], remaining)
        if not ready:
            return
        chunk = os.read(output_fd, 1 << 16)
        if not chunk:
            return
        output.add(chunk)


def _read_report(report_fd: int) -> dict[str, Any]:
    """Merge the JSON lines the launcher wrote ('layers', 'returncode', 'error')."""
    os.set_blocking(report_fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(report_fd, 1 << 16):
            data += chunk
    report: dict[str, Any] = {}
    for line in data.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                report.update(entry)
    return report


def _remove_tree(path: str) -> None:
    """Delete the sample's directory, even where it took away its own permissions."""
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    for root, directories, _ in os.walk(path):
        for name in directories:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
    shutil.rmtree(path, ignore_errors=True)


class _Output:
    """The first and the last half of at most `limit` bytes of a stream, and how much fell between."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        excess = len(self.tail) - self.tail_limit
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        head = self.head.decode("utf-8", "replace")
        tail = self.tail.decode("utf-8", "replace")
        if not self.dropped:
            return head + tail
        return f"{head}\n[... {self.dropped} bytes of output left out ...]\n{tail}"


# The launcher: this file run as `python -I -B sandbox.py --launch PLAN`, first inside the
# namespaces and as root where that applies. It is single-threaded, so fork() is safe here.


def _launch(plan: dict[str, Any]) -> None:
    """Set up what the OS allows, start the sample, wait for it, clean up and report to the evaluator."""
    report_fd = plan["report_fd"]
    os.set_inheritable(report_fd, False)
    os.umask(0o022)
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the evaluator gone, no sample goes on
        limits = SandboxLimits(**plan["limits"])
        workdir, uid = plan["workdir"], plan["uid"]
        host = plan["host_namespaces"]
        layers = ["process", "limits"]
        in_pid_namespace = os.getpid() == 1
        if in_pid_namespace:
            layers.append("pid")
        if _namespace_inode("net") == host["net"]:
            _unshare(_CLONE_NEWNET)
        if _namespace_inode("net") not in (None, host["net"]):
            layers.append("network")
        if _namespace_inode("mnt") == host["mnt"]:
            _unshare(_CLONE_NEWNS)
        own_mounts = host["mnt"] is not None and _namespace_inode("mnt") not in (None, host["mnt"])
        if own_mounts and _prepare_filesystem(workdir, uid, limits.scratch_bytes()):
            layers.append("filesystem")
        elif uid is not None:
            for path in (workdir, os.path.join(workdir, PROGRAM_NAME)):
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


def _become_sample(plan: dict[str, Any], limits: SandboxLimits, uid: int | None, report_fd: int) -> None:
    """In the forked child: set the limits, drop to `uid`, and exec the program; never returns."""
    try:
        for ignored in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; exec would keep that
            signal.signal(ignored, signal.SIG_DFL)
        processes = limits.processes
        if uid is None and not plan["user_namespace"]:
            processes += sum(owner == os.getuid() for owner in _process_uids().values())  # counted per uid
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
        os.execve(sys.executable, [sys.executable, "-I", "-B", PROGRAM_NAME], plan["environment"])
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
    with open(os.path.join(workdir, PROGRAM_NAME), "rb") as handle:
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
    program_path = os.path.join(workdir, PROGRAM_NAME)
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
    sys.exit(f"usage: {sys.argv[0]} --launch PLAN (started by tuner.sandbox.run_untrusted)")
