"""The package's one atomic-write helper: a reader sees the old file or the new one, never a torn one."""

import os
import stat

import pytest

from albsnn.atomic import atomic_path, write_atomic


def test_text_bytes_and_chunks_round_trip(tmp_path):
    assert write_atomic(tmp_path / "a.json", '{"x": 1}').read_text() == '{"x": 1}'
    assert write_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert write_atomic(tmp_path / "sub" / "c.bin", iter([b"ab", b"cd"])).read_bytes() == b"abcd"


def test_failure_mid_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    target = write_atomic(tmp_path / "sweep.json", "old")

    def chunks():
        yield b"new, half"
        raise KeyboardInterrupt  # a kill between two chunks

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, chunks())
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["sweep.json"]


def test_files_are_readable_by_others(tmp_path):
    mode = stat.S_IMODE(write_atomic(tmp_path / "m.pt", b"").stat().st_mode)
    assert mode == 0o644


def test_atomic_path_hands_a_name_to_writers_that_need_one(tmp_path):
    with atomic_path(tmp_path / "ckpt.pt") as tmp:
        tmp.write_bytes(b"weights")
        assert not (tmp_path / "ckpt.pt").exists()  # not visible until the block ends
    assert (tmp_path / "ckpt.pt").read_bytes() == b"weights"


def test_a_writer_that_fails_leaves_nothing(tmp_path):
    # a cache file half written when the disk fills: neither it nor the temporary file remains
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "cache" / "x.npz") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert os.listdir(tmp_path / "cache") == []


def test_a_write_that_need_not_survive_a_power_cut_is_still_never_torn(tmp_path, monkeypatch):
    # durable=False skips the fsync (the spool's sent counter, written per record) and nothing else
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    target = write_atomic(tmp_path / "mlflow-spool.sent", "7", durable=False)
    assert target.read_text() == "7" and synced == []
    write_atomic(target, "8")
    assert target.read_text() == "8" and len(synced) == 1
    assert os.listdir(tmp_path) == ["mlflow-spool.sent"]
