"""Run untrusted generated code in a throwaway sandbox (pure: standard library only).

`run_untrusted` (here, the evaluator) writes a program into a fresh temporary directory and runs
it as `python -I -B program.py` through a small launcher (`launcher.py`, run as a script; `common.py`
holds what both use). Layers of protection, each applied where the OS allows it;
`SandboxResult.layers` names those that held:

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
import functools
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from tuner.scoring.sandbox.common import PROGRAM_NAME, SandboxLimits, namespace_inode, process_uids

STATUSES = ("passed", "failed", "timeout", "killed")
LAYERS = ("process", "limits", "pid", "network", "filesystem", "user")
# Fresh uids (and gids) for samples when the evaluator is root: far above the ranges that
# distributions hand out (system < 1000, users < 60000, systemd dynamic users < 65535).
SANDBOX_UIDS = range(1_500_000_000, 1_501_000_000)

_SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin"
_DRAIN_SECONDS = 1.0  # how long output is still read after the run ended
_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")

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
            "host_namespaces": {kind: namespace_inode(kind) for kind in ("mnt", "net")},
            "user_namespace": "--user" in namespaces,
            "environment": {"PATH": _SEARCH_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"},
        }
        launcher = [sys.executable, "-I", "-B", _LAUNCHER, "--launch", json.dumps(plan)]
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


def _fresh_uid() -> int:
    """A uid from SANDBOX_UIDS that no running process has (the same number serves as gid)."""
    in_use = set(process_uids().values())
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
        leftovers = [pid for pid, owner in process_uids().items() if owner == uid]
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
