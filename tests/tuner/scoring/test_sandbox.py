"""The sandbox for generated code: ordinary programs pass or fail, hostile ones are stopped and leave nothing behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuner.scoring import sandbox
from tuner.scoring.sandbox import LAYERS, SANDBOX_UIDS, SandboxLimits, SandboxResult, run_untrusted

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "transformers", "peft", "lm_eval", "textual", "datasets", "numpy", "optuna")


def sandbox_processes() -> list[int]:
    """Live processes running under a sandbox uid, seen from the host's /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
        zombie = re.search(r"^State:\s+Z", status, re.MULTILINE) is not None
        if uid is not None and int(uid.group(1)) in SANDBOX_UIDS and not zombie:
            found.append(int(entry.name))
    return found


def marked_processes(marker: str) -> list[int]:
    """Processes whose command line holds `marker` (zombies have an empty one)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def program(text: str, **names: object) -> str:
    """Dedent a program and put the repr of each given value in place of its NAME."""
    text = textwrap.dedent(text)
    for name, value in names.items():
        text = text.replace(name, repr(value))
    return text


@pytest.fixture(autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """After every test: no sandbox process runs and the host's mounts are as they were."""
    mounts = Path("/proc/self/mountinfo").read_text()
    yield
    assert sandbox_processes() == []
    assert Path("/proc/self/mountinfo").read_text() == mounts


@pytest.fixture(params=["unshare", "ctypes"])
def isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run through util-linux `unshare`, then again as if it were missing (the launcher's own fallbacks)."""
    if request.param == "ctypes":
        monkeypatch.setattr(sandbox, "_namespace_command", lambda: ())
    return request.param


# Paths the sandbox replaces with tmpfs (scratch dirs) or may cover (/root, when the interpreter lives there).
_NOT_VISIBLE = ("/tmp", "/var/tmp", "/dev/shm", "/root")


def visible_parent() -> Path:
    """A root-writable directory the sample sees as it is: beside this file unless the checkout is hidden."""
    for candidate in (Path(__file__).parent, Path("/srv"), Path("/opt"), Path("/var/lib")):
        resolved = candidate.resolve()
        hidden = any(resolved.is_relative_to(path) for path in _NOT_VISIBLE)
        if resolved.is_dir() and os.access(resolved, os.W_OK) and not hidden:
            return resolved
    pytest.skip("no root-writable directory outside the sandbox's tmpfs mounts")


@pytest.fixture(params=["tmp_path", "visible"])
def outside_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A root-owned directory outside the sample's: pytest's tmp_path, or one the sample can see and enter.

    The second lies outside every tmpfs the sandbox mounts (beside this file, or /srv, /opt or
    /var/lib where the checkout lies under /tmp), so only the unprivileged uid keeps the sample out.
    """
    if request.param == "tmp_path":
        yield tmp_path
        return
    directory = Path(tempfile.mkdtemp(prefix=".sandbox-outside-", dir=visible_parent()))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def test_limits_defaults():
    assert SandboxLimits() == SandboxLimits(
        wall_seconds=10.0,
        cpu_seconds=10,
        memory_bytes=1 << 30,
        file_bytes=16 << 20,
        processes=64,
        output_bytes=64 << 10,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("wall_seconds", 0),
        ("wall_seconds", -1.5),
        ("wall_seconds", float("nan")),
        ("wall_seconds", float("inf")),
        ("cpu_seconds", 0),
        ("cpu_seconds", 1.5),
        ("memory_bytes", 0),
        ("file_bytes", -1),
        ("processes", 0),
        ("output_bytes", True),
    ],
)
def test_limits_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"{field} .*got {re.escape(repr(value))}"):
        SandboxLimits(**{field: value})


def test_result_rejects_an_unknown_status():
    with pytest.raises(ValueError, match="'crashed'"):
        SandboxResult("crashed", 1, 0.1, "")


def test_sandbox_imports_only_the_standard_library():
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import tuner.scoring.sandbox\n"
        "new = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names) - {'tuner'}))\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.splitlines() == ["[]", "[]"]


def test_a_passing_program_runs_in_a_fresh_directory_removed_afterwards():
    result = run_untrusted(
        program(
            """
            import os
            print(os.getcwd())
            print(sorted(os.listdir()))
            with open("scratch.txt", "w") as handle:
                handle.write("left behind?")
            """
        )
    )
    assert result.passed
    assert (result.status, result.returncode) == ("passed", 0)
    cwd, listing = result.output.splitlines()
    assert listing == "['program.py']"
    assert not Path(cwd).exists()
    assert {"process", "limits"} <= set(result.layers) <= set(LAYERS)


def test_a_failing_assert_fails_with_its_traceback():
    result = run_untrusted("assert 1 + 1 == 3, 'arithmetic'\n")
    assert not result.passed
    assert (result.status, result.returncode) == ("failed", 1)
    assert "AssertionError: arithmetic" in result.output


def test_an_endless_loop_times_out_at_the_wall_limit():
    result = run_untrusted(
        "import os\nprint(os.getcwd(), flush=True)\nwhile True:\n    pass\n",
        SandboxLimits(wall_seconds=2.0, cpu_seconds=30),
    )
    assert (result.status, result.returncode) == ("timeout", None)
    assert 2.0 <= result.seconds < 3.0
    assert not Path(result.output.strip()).exists()


def test_a_cpu_burner_is_killed_at_the_cpu_limit():
    result = run_untrusted("while True:\n    pass\n", SandboxLimits(wall_seconds=10.0, cpu_seconds=1))
    assert (result.status, result.returncode) == ("killed", -signal.SIGXCPU)
    assert result.seconds < 8.0


@pytest.mark.parametrize(
    "allocation",
    ["huge = bytearray(8 << 30)", "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))"],
    ids=["8-GiB-at-once", "1-MiB-at-a-time"],
)
def test_a_huge_allocation_fails_with_memory_error(allocation):
    result = run_untrusted(allocation + "\n", SandboxLimits(memory_bytes=256 << 20))
    assert result.status == "failed"
    assert "MemoryError" in result.output


def test_a_file_above_the_size_limit_cannot_be_written():
    limits = SandboxLimits(file_bytes=1 << 20)
    write = "with open('big.bin', 'wb') as handle:\n    handle.write(b'x' * SIZE)\n"
    assert run_untrusted(program(write, SIZE=1 << 20), limits).passed
    result = run_untrusted(program(write, SIZE=(1 << 20) + 1), limits)
    assert result.status == "failed"
    assert "File too large" in result.output


def test_scratch_space_is_bounded():
    result = run_untrusted(
        program(
            """
            for number in range(100):
                with open(f"part-{number}.bin", "wb") as handle:
                    handle.write(b"x" * (1 << 20))
            """
        ),
        SandboxLimits(file_bytes=1 << 20),
    )
    if "filesystem" not in result.layers:
        pytest.skip("no mount namespace here: the sample writes to the real disk, bounded per file only")
    assert result.status == "failed"
    assert "No space left on device" in result.output


def test_output_keeps_the_beginning_and_the_end():
    result = run_untrusted("print('BEGIN')\nprint('y' * 200_000)\nprint('END')\n", SandboxLimits(output_bytes=1000))
    assert result.passed
    assert result.output.startswith("BEGIN\n")
    assert result.output.endswith("END\n")
    assert "bytes of output left out" in result.output
    assert len(result.output) < 1100


def test_layers_are_reported(isolation):
    result = run_untrusted("pass\n")
    assert result.passed
    assert {"process", "limits"} <= set(result.layers)
    if isolation == "ctypes":
        assert "pid" not in result.layers


def test_a_fork_bomb_is_contained(isolation):
    marker = f"fork-bomb-{uuid.uuid4().hex}"
    bomb = f"import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n# {marker}\n"
    source = program(
        """
        import os, sys
        os.execv(sys.executable, [sys.executable, "-I", "-c", BOMB])
        """,
        BOMB=bomb,
    )
    result = run_untrusted(source, SandboxLimits(wall_seconds=3.0, processes=16))
    assert result.status in ("failed", "timeout")
    assert result.seconds < 5.0
    assert marked_processes(marker) == []


@pytest.mark.parametrize("ending", ["exits", "times-out"])
def test_a_detached_child_does_not_outlive_the_sample(isolation, ending):
    marker = f"detached-{uuid.uuid4().hex}"
    source = program(
        """
        import os, sys
        ready_read, ready_write = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.set_inheritable(ready_write, True)
                code = f"import os, time\\nos.write({ready_write}, b'up')\\ntime.sleep(30)\\n# MARKER"
                os.execv(sys.executable, [sys.executable, "-I", "-c", code])
            os._exit(0)
        os.close(ready_write)
        print("detached child is", os.read(ready_read, 2).decode(), flush=True)
        """
    ).replace("MARKER", marker)
    if ending == "times-out":
        source += "import time\ntime.sleep(60)\n"
    result = run_untrusted(source, SandboxLimits(wall_seconds=2.0))
    assert result.status == ("passed" if ending == "exits" else "timeout"), result.output
    assert "detached child is up" in result.output
    assert marked_processes(marker) == []


def touch_outside(directory: Path, target: Path, action: str) -> SandboxResult:
    """Run a sample that lists `directory`, then does `action` to TARGET."""
    source = """
        import os
        try:
            print("sees", sorted(os.listdir(DIRECTORY)))
        except OSError as error:
            print("cannot list:", error)
        """
    return run_untrusted(program(textwrap.dedent(source) + action, DIRECTORY=str(directory), TARGET=str(target)))


def test_writing_outside_its_directory_fails(isolation, outside_dir):
    target = outside_dir / f"escaped-{uuid.uuid4().hex}.txt"
    result = touch_outside(outside_dir, target, 'open(TARGET, "w").write("escaped")')
    assert result.status == "failed"
    assert not target.exists()


def test_deleting_outside_its_directory_fails(isolation, outside_dir):
    keep = outside_dir / "keep.txt"
    keep.write_text("precious")
    keep.chmod(0o644)
    result = touch_outside(outside_dir, keep, "os.remove(TARGET)")
    assert result.status == "failed"
    assert keep.read_text() == "precious"
    if outside_dir.name.startswith(".sandbox-outside-"):
        assert "sees ['keep.txt']" in result.output  # it saw the file, and still could not delete it
        assert "PermissionError" in result.output


def test_a_socket_cannot_reach_a_listening_port(isolation):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run_untrusted(
            program(
                """
                import socket
                socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
                print("connected")
                """,
                PORT=port,
            )
        )
        if "network" not in result.layers:
            pytest.skip("no network namespace here (unshare refused): the sample shares the host's network")
        assert result.status == "failed"
        assert "connected" not in result.output
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_killing_its_parent_fails(isolation):
    result = run_untrusted("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('parent killed')\n")
    assert result.status == "failed"
    assert "parent killed" not in result.output
    assert "PermissionError" in result.output


def test_signalling_the_evaluator_fails(isolation):
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        result = run_untrusted(program("import os, signal\nos.kill(PID, signal.SIGUSR1)\n", PID=os.getpid()))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert result.status == "failed"
    assert received == []
