"""The CPU allocator the advisor runs with: jemalloc where installed, glibc when asked or when it is missing."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import tuner.training.runtime as runtime


def test_jemalloc_is_preloaded_where_installed_unless_glibc_is_asked_for(monkeypatch):
    monkeypatch.setattr(runtime, "allocator", lambda: "glibc")
    monkeypatch.setattr(runtime, "find_jemalloc", lambda: "/usr/lib/libjemalloc.so.2")
    env = runtime.jemalloc_environment({"PATH": "/bin", "LD_PRELOAD": "/other.so"})
    assert env == {"PATH": "/bin", "LD_PRELOAD": "/usr/lib/libjemalloc.so.2 /other.so", "ADVISOR_ALLOCATOR": "jemalloc"}
    assert runtime.jemalloc_environment({"ADVISOR_ALLOCATOR": "glibc"}) is None
    monkeypatch.setattr(runtime, "find_jemalloc", lambda: None)
    assert runtime.jemalloc_environment({}) is None  # not installed: glibc it is
    monkeypatch.setattr(runtime, "allocator", lambda: "jemalloc")
    monkeypatch.setattr(runtime, "find_jemalloc", lambda: "/usr/lib/libjemalloc.so.2")
    assert runtime.jemalloc_environment({}) is None  # already loaded


@pytest.mark.skipif(runtime.find_jemalloc() is None, reason="jemalloc is not installed here (Debian: libjemalloc2)")
def test_the_advisor_command_runs_with_jemalloc_and_says_what_its_estimate_predicts(monkeypatch):
    monkeypatch.delenv("ADVISOR_ALLOCATOR", raising=False)
    advisor = shutil.which("advisor")
    assert advisor is not None
    done = subprocess.run([advisor, "memory"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "advisor runs with jemalloc" in " ".join(done.stdout.split())
    monkeypatch.setenv("ADVISOR_ALLOCATOR", "glibc")
    done = subprocess.run([advisor, "memory"], capture_output=True, text=True, timeout=120, check=False)
    assert "glibc's default allocator keeps freed memory" in " ".join(done.stdout.split())
