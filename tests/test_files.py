"""accelnn.files.write_atomic: the target is always the old or the new complete file, whatever
is interrupted where; no temporary file survives; the target's mode is kept; temporary files of
crashed writes of the same target are removed by the next write, and nothing else is."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from accelnn import files
from accelnn.files import write_atomic

OLD, NEW = b"old content\n", b"new content, longer than the old\n"
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX modes, flock and fsync of "
                                                           "folders")


def _writer(data: bytes):
    return lambda f: f.write(data)


def _leftovers(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(files.PREFIX))


@pytest.fixture
def umask():
    """Set the umask for one test, and restore it."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def test_writes_the_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "m.npz"
    write_atomic(target, _writer(OLD))
    assert target.read_bytes() == OLD
    write_atomic(str(target), _writer(NEW))
    write_atomic(os.fsencode(target), lambda f: (f.write(b"x" * 10), f.seek(0), f.write(b"y")))
    assert target.read_bytes() == b"y" + b"x" * 9
    assert _leftovers(tmp_path) == []


class Interrupt(KeyboardInterrupt):
    pass


def _interrupt(after_real_call):
    """A replacement that raises an interrupt before (or right after) doing the real work,
    as a Ctrl-C landing inside the call would."""
    def wrap(real):
        def call(*args, **kwargs):
            if after_real_call:
                real(*args, **kwargs)
            raise Interrupt
        return call
    return wrap


@pytest.mark.parametrize("stage, new_wins", [
    ("write", False),  # inside the caller's write
    ("fsync file", False),  # flushing the temporary file
    ("chmod", False),  # taking the old file's mode
    ("replace before", False),  # the interrupt lands before the rename
    ("replace after", True),  # the rename is done, then the interrupt (it was FileNotFoundError)
    ("fsync folder", True),  # after the rename
    ("close", True),  # closing the renamed file
])
def test_an_interrupt_anywhere_leaves_a_whole_file_and_no_temporary(stage, new_wins, tmp_path,
                                                                     monkeypatch):
    target = tmp_path / "ck.npz"
    target.write_bytes(OLD)
    fsyncs = []
    real_fsync = os.fsync

    def fsync(fd):
        fsyncs.append(fd)
        if stage == "fsync file" or (stage == "fsync folder" and len(fsyncs) == 2):
            raise Interrupt
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    if stage == "replace before":
        monkeypatch.setattr(os, "replace", _interrupt(False)(os.replace))
    elif stage == "replace after":
        monkeypatch.setattr(os, "replace", _interrupt(True)(os.replace))
    elif stage == "chmod" and hasattr(os, "fchmod"):
        monkeypatch.setattr(os, "fchmod", _interrupt(False)(os.fchmod))
    elif stage == "close":
        monkeypatch.setattr(files, "_close", _interrupt(True)(files._close))

    def write(f):
        f.write(NEW[:5])
        if stage == "write":
            raise Interrupt
        f.write(NEW[5:])

    with pytest.raises(Interrupt):  # the interrupt itself, never an error from the clean-up
        write_atomic(target, write)
    monkeypatch.undo()
    assert target.read_bytes() == (NEW if new_wins else OLD)
    assert _leftovers(tmp_path) == []


def test_a_failed_write_leaves_no_new_file(tmp_path):
    target = tmp_path / "new.npz"

    def fails(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, fails)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="write closed the file"):
        write_atomic(target, lambda f: f.close())
    assert os.listdir(tmp_path) == []


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604, 0o444])
def test_rewriting_keeps_the_mode_of_the_file(mode, tmp_path, umask):
    target = tmp_path / "private.npz"
    write_atomic(target, _writer(OLD))
    os.chmod(target, mode)
    write_atomic(target, _writer(NEW))
    assert stat.S_IMODE(os.stat(target).st_mode) == mode
    assert target.read_bytes() == NEW


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_umask_mode(mask, tmp_path, umask):
    umask(mask)
    target = tmp_path / "new.npz"
    write_atomic(target, _writer(NEW))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~mask


@posix_only
def test_a_symbolic_link_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.npz"
    real.write_bytes(OLD)
    os.chmod(real, 0o600)
    (tmp_path / "link.npz").symlink_to(real)
    write_atomic(tmp_path / "link.npz", _writer(NEW))
    assert (tmp_path / "link.npz").is_symlink() and real.read_bytes() == NEW
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600


def test_bad_targets_are_refused_before_anything_is_written(tmp_path):
    (tmp_path / "a_file").write_bytes(OLD)
    cases = [
        (tmp_path, IsADirectoryError, "names a folder, not a file"),
        (str(tmp_path / "sub") + os.sep, IsADirectoryError, "names a folder"),
        (tmp_path / "missing" / "m.npz", FileNotFoundError,
         r"the folder '.*missing' does not exist"),
        (tmp_path / "a_file" / "m.npz", NotADirectoryError, r"'.*a_file' is not a folder"),
        (123, TypeError, "path must be a file path"),
    ]
    for path, exc, match in cases:
        with pytest.raises(exc, match=match) as info:
            write_atomic(path, _writer(NEW))
        assert files.PREFIX not in str(info.value)  # it names the target, not a temp file
    with pytest.raises(TypeError, match="write must be a function"):
        write_atomic(tmp_path / "m.npz", NEW)
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


# ---------------------------------------------------------------------- crashed writes
def _crash(target) -> None:
    """A process that dies (as by SIGKILL) inside write_atomic's write."""
    code = ("import os, sys\nfrom accelnn.files import write_atomic\n"
            "def die(f):\n    f.write(b'half' * 1000); f.flush(); os._exit(9)\n"
            "write_atomic(sys.argv[1], die)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], timeout=60)
    assert proc.returncode == 9


def test_the_next_write_removes_what_a_crashed_write_left(tmp_path):
    target = tmp_path / "ck.npz"
    target.write_bytes(OLD)
    _crash(target)
    first = _leftovers(tmp_path)
    assert len(first) == 1 and first[0].startswith(".accelnn-ck.npz.")
    _crash(target)  # a crashed write, too, removes the orphan before it
    second = _leftovers(tmp_path)
    assert len(second) == 1 and second != first
    assert target.read_bytes() == OLD
    write_atomic(target, _writer(NEW))
    assert _leftovers(tmp_path) == [] and target.read_bytes() == NEW


def test_only_the_temporary_files_of_the_same_target_are_removed(tmp_path):
    others = [
        ".accelnn-other.npz.0123abcd.tmp",  # another target's
        ".accelnn-ck.npz.x.0123abcd.tmp",  # the target ck.npz.x's
        ".accelnn-ck.npz.0123ABCD.tmp",  # not our hex digits
        ".accelnn-ck.npz.0123abcd.tmp.bak",
        ".accelnn-q0_ab7zc.tmp",  # an older accelnn's mkstemp name: whose it is is unknown
        "ck.npz.0123abcd.tmp",
    ]
    for name in others:
        (tmp_path / name).write_bytes(b"keep")
    (tmp_path / ".accelnn-ck.npz.deadbeef.tmp").write_bytes(b"orphan")
    os.mkdir(tmp_path / ".accelnn-ck.npz.0000beef.tmp")  # not a file
    write_atomic(tmp_path / "ck.npz", _writer(NEW))
    assert sorted(os.listdir(tmp_path)) == sorted([*others, ".accelnn-ck.npz.0000beef.tmp",
                                                   "ck.npz"])
    # the target ck.npz.x's own writes do remove theirs
    write_atomic(tmp_path / "ck.npz.x", _writer(NEW))
    assert ".accelnn-ck.npz.x.0123abcd.tmp" not in os.listdir(tmp_path)


@posix_only
def test_a_temporary_file_a_live_writer_holds_is_kept(tmp_path):
    if files.fcntl is None:
        pytest.skip("no flock here")
    busy = tmp_path / ".accelnn-ck.npz.0123abcd.tmp"
    busy.write_bytes(b"being written")
    with open(busy, "rb") as held:  # another open file: its lock excludes ours
        files.fcntl.flock(held.fileno(), files.fcntl.LOCK_EX)
        write_atomic(tmp_path / "ck.npz", _writer(NEW))
        assert busy.exists()
    write_atomic(tmp_path / "ck.npz", _writer(NEW))  # released: now an orphan
    assert not busy.exists()


def test_without_locks_only_old_temporary_files_count_as_orphans(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "fcntl", None)
    young = tmp_path / ".accelnn-ck.npz.0123abcd.tmp"
    old = tmp_path / ".accelnn-ck.npz.4567abcd.tmp"
    young.write_bytes(b"young")
    old.write_bytes(b"old")
    past = time.time() - files.STALE_SECONDS - 60
    os.utime(old, (past, past))
    write_atomic(tmp_path / "ck.npz", _writer(NEW))
    assert young.exists() and not old.exists()
    assert (tmp_path / "ck.npz").read_bytes() == NEW


@posix_only
def test_a_temporary_file_taken_for_an_orphan_before_it_was_locked_is_replaced(tmp_path,
                                                                              monkeypatch):
    """A cleaner can lock and remove a new temporary file in the moment between its creation
    and its writer's lock; the writer sees that and starts over with another."""
    if files.fcntl is None:
        pytest.skip("no flock here")
    real_lock, made = files._lock, []

    def lock(fd, wait):
        if wait and not made:  # the writer's first lock: a cleaner got there first
            made.append(fd)
            victim = [n for n in os.listdir(tmp_path) if n.startswith(files.PREFIX)]
            os.unlink(tmp_path / victim[0])
        return real_lock(fd, wait)

    monkeypatch.setattr(files, "_lock", lock)
    write_atomic(tmp_path / "ck.npz", _writer(NEW))
    assert made and (tmp_path / "ck.npz").read_bytes() == NEW
    assert _leftovers(tmp_path) == []


def test_a_long_target_name_gets_a_short_temporary_name(tmp_path):
    name = "m" * 250 + ".npz"
    try:
        (tmp_path / name).write_bytes(OLD)
    except OSError:
        pytest.skip("this file system does not take 254-character names")
    seen = []

    def write(f):
        seen.extend(_leftovers(tmp_path))
        f.write(NEW)

    write_atomic(tmp_path / name, write)
    assert (tmp_path / name).read_bytes() == NEW
    assert len(seen) == 1 and len(seen[0]) <= 255 and files._pattern(name).fullmatch(seen[0])


def test_a_device_or_pipe_is_never_replaced(tmp_path):
    """A rename over /dev/null (as root) replaced the device with a regular file."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="device, pipe or socket"):
        write_atomic(fifo, lambda f: f.write(b"x"))
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_ctrl_c_right_after_the_temporary_file_is_made_removes_it(tmp_path, monkeypatch):
    """A SIGINT landing between the creation of the temporary file and the `try` that cleans
    up left the file (and its descriptor) behind; it is now held until the file is in care."""
    import signal

    real_create = files._create

    def create_then_sigint(*args):
        made = real_create(*args)
        os.kill(os.getpid(), signal.SIGINT)
        return made

    monkeypatch.setattr(files, "_create", create_then_sigint)
    # Python's own Ctrl-C handler, which a shell may have replaced by "ignore" (CI, nohup)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            write_atomic(tmp_path / "m.npz", lambda f: f.write(b"new"))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert list(tmp_path.iterdir()) == []


def test_a_ctrl_c_is_not_replaced_by_the_writers_cleanup_error(tmp_path):
    """numpy's savez closes its zip file in a `finally`; after a Ctrl-C inside it, that close
    raised ValueError and the Ctrl-C was lost."""
    def write(f):
        try:
            raise KeyboardInterrupt
        finally:
            raise ValueError("Can't close the ZIP file while there is an open writing handle")

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "m.npz", write)
    assert list(tmp_path.iterdir()) == []
