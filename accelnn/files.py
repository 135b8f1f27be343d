"""Writing a file so that a crash, a kill or a Ctrl-C never leaves a half-written one.

    from accelnn.files import write_atomic
    write_atomic("model.npz", lambda f: np.savez(f, **arrays))

`write_atomic(path, write)` calls `write(f)` with a binary file open on a temporary file beside
the target, `.accelnn-<name>.<8 hex digits>.tmp`, then flushes and fsyncs it, gives it the
target's mode, renames it over the target (os.replace) and fsyncs the folder. At every moment
the target is either the old complete file or the new complete one.

While it is being written, the temporary file is locked (flock). A process that dies while
saving (SIGKILL, power loss) leaves its temporary file behind; the next write_atomic of the
same target removes it, and every other such file of that target that no live writer holds.
Files of other targets, and files that only look alike, are never touched. Where flock is not
available (Windows, a file system without locks), only files older than STALE_SECONDS count
as stale.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import signal
import stat
import threading
import time

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["write_atomic"]

PREFIX = ".accelnn-"
SUFFIX = ".tmp"
STALE_SECONDS = 15 * 60  # without locks: a temporary file this old is an orphan
_NAME_MAX = 255 - len(PREFIX) - 1 - 8 - len(SUFFIX)  # bytes of the target's name in ours
_BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)  # flock: another holder


def write_atomic(path, write) -> None:
    """Write the file at `path` through `write(f)`, atomically.

    path: the file to write (str, bytes or os.PathLike); a symbolic link is followed, so the
        file it points to is replaced and the link kept. Its folder must exist.
    write: called once with a binary file object open for writing (it has write, seek and
        tell); it writes the whole content and must not close the file.

    The content goes to a temporary file in the target's folder, is flushed and fsynced, takes
    the mode (and, where allowed, the owner) of the file it replaces, or 0o666 & ~umask for a
    new file, and is renamed over the target; the folder is then fsynced. An exception or a
    KeyboardInterrupt at any point, in `write` or in this function, leaves the old file (or
    none) or the new complete file, removes the temporary file and reaches the caller as it
    was raised. Stale temporary files of earlier, crashed writes of this target are removed
    first (see the module docstring).

    Raises TypeError for a path that is not a path or a `write` that is not callable,
    IsADirectoryError when `path` is a folder, OSError (EINVAL) when it is an existing device,
    pipe or socket (such as /dev/null, which a rename would replace), FileNotFoundError /
    NotADirectoryError when its folder does not exist or is not a folder, other OSErrors
    (e.g. PermissionError, a full disk) naming the target, and whatever `write` raises.
    """
    target = _target(path)
    if not callable(write):
        raise TypeError(f"write must be a function taking the open file, got {write!r}")
    folder, name = os.path.split(target)
    _remove_stale(folder, name)
    # A Ctrl-C between creating the temporary file and the `try` that removes it would leave
    # it behind: it is deferred until the file is in the try's care, then delivered there.
    held = _hold_interrupts()
    try:
        fd, tmp = _create(folder, name, target)
        try:
            f = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            _remove(tmp)
            raise
    except BaseException:
        _release_interrupts(held)
        raise
    replaced = False
    try:
        _release_interrupts(held)
        write(f)
        if f.closed:
            raise ValueError(f"write closed the file while writing {target!r}; it must leave "
                             f"it open")
        f.flush()
        os.fsync(f.fileno())
        _take_mode(f.fileno(), target)
        if fcntl is None:  # Windows cannot rename an open file; nothing holds a lock there
            f.close()
        os.replace(tmp, target)
        replaced = True
    except BaseException as exc:
        # the temporary file goes, whatever happened; when an interrupt lands inside
        # os.replace after the rename, it is already gone: the caller gets the interrupt
        _close(f)
        if not replaced:
            _remove(tmp)
        if isinstance(exc.__context__, KeyboardInterrupt) and not isinstance(
                exc, KeyboardInterrupt):
            # an error of the writer's own cleanup (numpy's savez closing its zip file in a
            # `finally`) replaced the user's Ctrl-C: the Ctrl-C is what reaches the caller
            raise exc.__context__ from None
        raise
    _close(f)  # releases the lock; the content is fsynced
    _sync_folder(folder)


# ---------------------------------------------------------------------- the target
def _target(path) -> str:
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"path must be a file path (str, bytes or os.PathLike), got "
                        f"{path!r}") from None
    target = os.path.realpath(path)
    if os.path.isdir(target) or path.endswith(("/", os.sep)):
        raise IsADirectoryError(f"cannot write {path!r}: it names a folder, not a file")
    if os.path.exists(target) and not os.path.isfile(target):
        raise OSError(errno.EINVAL, f"cannot write {path!r}: it is a device, pipe or socket, "
                                    f"not a regular file (a rename would replace it)")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise NotADirectoryError(f"cannot write {path!r}: {folder!r} is not a folder")
        raise FileNotFoundError(f"cannot write {path!r}: the folder {folder!r} does not "
                                f"exist")
    return target


def _stem(name: str) -> str:
    """The target's name as it appears in its temporary files' names (shortened, with a
    hash, when the whole name would be too long for a file name)."""
    if len(name.encode(errors="surrogateescape")) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode(errors="surrogateescape")).hexdigest()[:16]
    return f"{name[:_NAME_MAX // 4 - 17]}~{digest}"


def _pattern(name: str) -> re.Pattern:
    """What the names of `name`'s temporary files match, and nothing else: the 8 hex digits
    before the suffix make the split unambiguous (the temporary files of a target named
    `name.0123abcd` do not match `name`'s)."""
    return re.compile(re.escape(PREFIX + _stem(name)) + r"\.[0-9a-f]{8}" + re.escape(SUFFIX))


# ---------------------------------------------------------------------- the temporary file
def _lock(fd: int, wait: bool) -> bool | None:
    """flock `fd`: True when held, False when another holds it, None without locks."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError as exc:
        if exc.errno in _BUSY and not wait:
            return False
        return None  # no locks on this file system
    return True


def _same_file(path: str, fd: int) -> bool:
    """`path` still names the open file `fd`."""
    try:
        st, mine = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _hold_interrupts():
    """Defer Ctrl-C: in the main thread (the only one where Python runs signal handlers and
    may set them), SIGINT's handler is swapped for one that only notes the signal. Returns
    what `_release_interrupts` needs, or None elsewhere. (A signal mask would not do: the
    kernel hands a process-directed SIGINT to any thread not blocking it, BLAS's included.)"""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is None):  # a handler set outside Python
        return None
    noted: list = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    return previous, noted


def _release_interrupts(held) -> None:
    """Put SIGINT's handler back, and run it now for a Ctrl-C that came meanwhile (Python's
    default handler raises KeyboardInterrupt here)."""
    if held is None:
        return
    previous, noted = held
    signal.signal(signal.SIGINT, previous)
    if noted:
        if callable(previous):
            previous(signal.SIGINT, None)
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


def _create(folder: str, name: str, target: str) -> tuple[int, str]:
    """A new, locked temporary file for `name` in `folder`: (fd, path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f"{PREFIX}{_stem(name)}.{secrets.token_hex(4)}{SUFFIX}")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask (or a default ACL) applies
        except FileExistsError:
            continue
        except OSError as exc:
            raise type(exc)(exc.errno, f"{exc.strerror}: cannot create a temporary file in "
                                       f"{folder!r} to write {target!r}") from exc
        try:
            _lock(fd, wait=True)
            # a cleaner may have taken this file for an orphan between os.open and the lock
            if _same_file(tmp, fd):
                return fd, tmp
        except BaseException:
            os.close(fd)
            _remove(tmp)
            raise
        os.close(fd)
    raise FileExistsError(f"no free temporary file name in {folder!r} to write {target!r}")


def _take_mode(fd: int, target: str) -> None:
    """Give the temporary file the replaced file's owner (where allowed) and mode; a new
    file keeps the mode it was created with (0o666 & ~umask)."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    if hasattr(os, "fchown") and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError:
            pass  # not allowed (not root, not a member of the group): ours then
    if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
        os.fchmod(fd, stat.S_IMODE(st.st_mode))


def _close(f) -> None:
    try:
        f.close()
    except OSError:
        pass  # after fsync and rename nothing rides on it; before, the write failed anyway


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # already renamed over the target, or removed


def _sync_folder(folder: str) -> None:
    """fsync the folder, so the rename survives a power loss (where folders can be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # Windows: folders cannot be opened; renames are journaled there
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- orphans
def _remove_stale(folder: str, name: str) -> None:
    """Remove the temporary files of `name` left in `folder` by writers that died: those
    no process holds locked (or, without locks, older than STALE_SECONDS)."""
    pattern = _pattern(name)
    try:
        with os.scandir(folder) as entries:
            candidates = [e.path for e in entries if pattern.fullmatch(e.name)]
    except OSError:
        return
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # gone (renamed by its writer), a link, or not ours to read
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            held = _lock(fd, wait=False)
            if held is False:
                continue  # a live writer
            if held is None and time.time() - st.st_mtime < STALE_SECONDS:
                continue  # no locks: only an old one is surely an orphan
            if _same_file(path, fd):  # not renamed over its target meanwhile
                _remove(path)
        finally:
            os.close(fd)
