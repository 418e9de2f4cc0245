"""One training run per workdir, and messages about the disk it lives on.

`WorkdirLock` is a file `<workdir>/run.lock` holding JSON {pid, host, started}, created with
O_CREAT | O_EXCL so that of two runs starting together exactly one gets it. Two runs on one workdir
would overwrite each other's checkpoints, model.keras and result.json; the second stops at once and
names the first. A lock left by a process that no longer exists (kill -9, a crash of the machine's
power) is taken over with a message: on the same host, `os.kill(pid, 0)` says whether the PID lives.
A lock from another host cannot be checked from here and is never taken over.

`WorkdirError` is the base of the errors a training run raises about its workdir; each message names
the file and what to do, and train.py prints it as one line.
"""

import datetime
import errno
import json
import os
import re
import shutil
import socket
import time

LOCK_FILE = "run.lock"
# An empty lock file younger than this may be a run between creating and writing it.
_UNWRITTEN_LOCK_SECONDS = 10

# errno values of "the disk (or this process's share of it) is full": ENOSPC, a quota (EDQUOT), a file
# size limit (EFBIG, RLIMIT_FSIZE). TF's file system reports them with these strerror texts.
DISK_FULL_ERRNOS = tuple(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if e)


class WorkdirError(RuntimeError):
    """A workdir that cannot be used as it is: in use, full, unreadable checkpoints; str() says what to do."""


class WorkdirInUse(WorkdirError):
    """Another live training run holds the workdir's lock."""


def format_bytes(n):
    """1536 -> "1.5 KB"; decimal units, as `df -H` and file managers show them."""
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"


def error_text(error, limit=400):
    """`Type: first line` of an exception, without TF's `{{function_node ...}}` and `[Op:...]` wrapping."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]", "", str(error)).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:limit]


def free_bytes(path):
    """Free bytes for this user on the file system holding `path` (or its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def is_disk_full(error):
    """Whether an OSError or a TF file-system error says the disk (or a quota or file size limit) is full."""
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    text = str(error)
    return any(os.strerror(e) in text for e in DISK_FULL_ERRNOS)


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's process
    return True


class WorkdirLock:
    """The lock of one training run on `workdir`; `check` reads it, `acquire` takes it, `release` gives it back.

    Args:
        workdir: the run's folder.
        out: where the stale-lock takeover message goes.
    """

    def __init__(self, workdir, out=print):
        self.workdir = os.fspath(workdir)
        self.path = os.path.join(self.workdir, LOCK_FILE)
        self.out = out
        self._held = False
        self._created_workdir = False

    def _holder(self):
        """The JSON of the current lock file, {} when it is unreadable, None when there is none."""
        try:
            with open(self.path) as f:
                holder = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # Half-written by a process killed between create and write: nothing says who holds it.
            return {}
        return holder if isinstance(holder, dict) else {}

    def _is_stale(self, holder):
        pid, host = holder.get("pid"), holder.get("host")
        if not holder:
            # Unreadable: a run killed between creating and writing it, unless one is doing so right now.
            try:
                return time.time() - os.path.getmtime(self.path) > _UNWRITTEN_LOCK_SECONDS
            except FileNotFoundError:
                return True
        if not isinstance(pid, int) or host != socket.gethostname():
            return False  # another machine's run: only that machine can tell whether it still lives
        # Our own PID in a lock we do not hold: a process before us had this PID (a container restart).
        return pid == os.getpid() or not _process_exists(pid)

    def _in_use(self, holder):
        return WorkdirInUse(
            f"workdir {self.workdir} is in use by another training run: PID {holder.get('pid')} on host "
            f"{holder.get('host')}, started {holder.get('started')} (lock file {self.path}). Wait for it to "
            "finish or stop it, or pass another --workdir; two runs on one workdir overwrite each other's "
            f"checkpoints. If that process is not a training run (a reused PID), delete {self.path}."
        )

    def check(self):
        """Raises WorkdirInUse when a live run holds the lock; writes nothing."""
        holder = self._holder()
        if holder is not None and not self._is_stale(holder):
            raise self._in_use(holder)

    def acquire(self):
        """Creates the workdir if needed and takes the lock, taking over a stale one with a message.

        Raises:
            WorkdirInUse: a live run (or a run on another host) holds it.
        """
        try:
            os.makedirs(self.workdir)
            self._created_workdir = True
        except FileExistsError:
            pass  # (another worker of a multi-worker run may create it at the same moment)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue  # released between our open and read: try again
                if not self._is_stale(holder):
                    self._remove_created_workdir()
                    raise self._in_use(holder) from None
                if holder:
                    self.out(
                        f"Taking over the stale lock {self.path} of PID {holder['pid']} on {holder['host']}, "
                        "which no longer runs."
                    )
                else:
                    self.out(
                        f"Taking over the unreadable lock {self.path}, left by a run killed while writing it."
                    )
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            self._held = True
            return self
        self._remove_created_workdir()
        raise WorkdirInUse(
            f"could not take the lock {self.path}: other runs keep taking it; use another --workdir"
        )

    def release(self):
        """Removes the lock if this run holds it, and the workdir if `acquire` created it and it is empty."""
        if not self._held:
            return
        self._held = False
        holder = self._holder()
        if holder and holder.get("pid") == os.getpid():
            os.remove(self.path)
        self._remove_created_workdir()

    def _remove_created_workdir(self):
        if self._created_workdir:
            try:
                os.rmdir(self.workdir)  # only succeeds when the run wrote nothing: no empty workdir left
            except OSError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
