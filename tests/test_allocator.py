"""`selectkit.allocator`: glibc's heap keeps freed blocks between steps when asked to, and is left
alone otherwise."""

import ctypes
import os
import sys

import pytest

from selectkit import allocator

GLIBC = sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else "")


def _calls(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value.value))
            return 1

    monkeypatch.setattr(allocator, "_glibc", lambda: FakeLibc())
    return calls


def test_zero_leaves_the_c_library_alone(monkeypatch):
    calls = _calls(monkeypatch)
    assert allocator.retain_freed_memory(0) is False
    assert calls == []


def test_sets_the_mmap_ceiling_and_the_trim_threshold(monkeypatch):
    calls = _calls(monkeypatch)
    assert allocator.retain_freed_memory(512) is True
    assert calls == [(allocator._M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD_MAX), (allocator._M_TRIM_THRESHOLD, 512 << 20)]


def test_trim_threshold_is_clamped_to_what_mallopt_takes(monkeypatch):
    calls = _calls(monkeypatch)
    allocator.retain_freed_memory(1)  # below the mmap ceiling: freed blocks that size would be trimmed at once
    allocator.retain_freed_memory(10**9)  # beyond a C int
    assert [v for p, v in calls if p == allocator._M_TRIM_THRESHOLD] == [allocator.MMAP_THRESHOLD_MAX, 2**31 - 1]


def test_without_glibc_nothing_happens(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.retain_freed_memory(1024) is False


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_glibc_accepts_the_settings():
    assert isinstance(allocator._glibc(), ctypes.CDLL)
    assert allocator.retain_freed_memory(1024) is True
