"""How a sandboxed program is launched: bubblewrap or the rlimits fallback, dedicated uids, cleanup.

Two isolation modes (see docs/sandbox.md for what each guarantees):

- ``bwrap``: bubblewrap with every namespace unshared (user, pid, net, ipc, uts, cgroup) and no nested
  user namespaces, only the system directories and the interpreter's prefix bound read-only (not the rest of the
  host's filesystem), fresh ``/dev`` and ``/proc``, size-limited private
  tmpfs ``/tmp`` and ``/dev/shm``, empty read-only ``/home``, ``/root``, ``/run`` and home directory, a
  cleared environment and ``--die-with-parent``. When the parent runs as root, bubblewrap itself runs under a dedicated
  unprivileged uid, so the sandbox holds no host privilege at all.
- ``rlimits``: a plain child process in its own session. As root it runs under a dedicated uid with no
  groups (ordinary file permissions then keep it out of root's files) and, when ``unshare --net``
  works, without network. As a normal user it is only rlimited: it can read what you can read.

In both modes the runner applies the rlimits of `SandboxLimits` before the untrusted code runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import itertools
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from thinkrl.rewards.sandbox.limits import SandboxLimits

logger = logging.getLogger(__name__)

# Where the runner, the solution and the run's config are visible inside the sandbox.
BWRAP_SRC = "/run/thinkrl"
PYTHON_FLAGS = ("-I", "-B", "-X", "utf8", "-X", "int_max_str_digits=0")
PATH_ENV = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Isolation:
    """A resolved way to launch programs.

    Fields:
        mode: ``"bwrap"`` or ``"rlimits"``.
        python: interpreter path that starts inside this sandbox.
        bwrap: the bubblewrap executable (``bwrap`` mode).
        drop_uid: the parent is root, so programs run under dedicated uids.
        unshare_net: (``rlimits`` mode, root) ``unshare --net`` wraps the program.
    """

    mode: Literal["bwrap", "rlimits"]
    python: str
    drop_uid: bool
    unshare_net: bool = False
    bwrap: str = "bwrap"


@dataclass(frozen=True)
class Launch:
    """Everything `subprocess.Popen` needs for one program (besides pipes).

    ``user``/``group``/``extra_groups`` are only set when no ``setpriv`` or ``unshare`` wrapper can switch
    the uid: Popen then has to fork instead of vfork, which costs a large parent (a trainer holding GBs)
    tens of milliseconds per program.
    """

    argv: list[str]
    env: dict[str, str] | None
    cwd: str | None
    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None


def is_root() -> bool:
    """True when this process may switch uids (effective uid 0)."""
    return os.geteuid() == 0


def python_candidates(limits: SandboxLimits) -> list[str]:
    """Interpreters to try, in order: the configured one, else this one, ``python3`` on PATH, /usr/bin/python3."""
    if limits.python is not None:
        return [limits.python]
    found = [sys.executable, shutil.which("python3") or "", "/usr/bin/python3"]
    out: list[str] = []
    for path in found:
        if path and os.path.exists(path) and path not in out:
            out.append(path)
    return out


# What a Python program needs of the host, bound read-only; nothing else of the host filesystem is visible (no
# repository, data, /etc/hostname or /var): merged-/usr symlinks stay symlinks.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime")


def _system_binds(python: str) -> list[str]:
    """bubblewrap arguments that make the system directories, a few loader files of ``/etc`` and the prefix of
    ``python`` (when it is installed outside them, e.g. /opt or a pyenv) visible, read-only."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += [a for path in SYSTEM_ETC if os.path.exists(path) for a in ("--ro-bind", path, path)]
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    if not any(prefix == d or prefix.startswith(d + "/") for d in SYSTEM_DIRS if os.path.isdir(d)):
        args += ["--ro-bind", prefix, prefix]
    return args


@functools.cache
def _no_nested_userns(bwrap: str) -> tuple[str, ...]:
    """``--disable-userns`` where bubblewrap has it (0.8+): else a program could create a nested user
    namespace and mount a tmpfs with no size limit inside it."""
    help_text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, check=False).stdout
    if "--disable-userns" in help_text:
        return ("--disable-userns",)
    logger.warning("bwrap has no --disable-userns (needs bubblewrap 0.8+): sandboxed programs can nest "
                   "user namespaces")
    return ()


def bwrap_argv(iso: Isolation, limits: SandboxLimits, src_dir: str, result_fd: int) -> list[str]:
    """The bubblewrap command line that runs ``src_dir/_runner.py`` (mounted at ``/run/thinkrl``)."""
    tmpfs = str(limits.tmpfs_mb << 20)
    argv = [iso.bwrap, "--unshare-all", "--unshare-user", *_no_nested_userns(iso.bwrap),
            "--die-with-parent", "--new-session",
            *_system_binds(iso.python),
            "--dev", "/dev", "--size", tmpfs, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--proc", "/proc",
            "--size", tmpfs, "--tmpfs", "/tmp",
            "--tmpfs", "/run", "--ro-bind", src_dir, BWRAP_SRC, "--remount-ro", "/run",
            "--remount-ro", "/",  # bubblewrap's own root is a tmpfs without a size limit: no writes there
            "--chdir", "/tmp", "--clearenv"]
    for key, value in sandbox_env("/tmp").items():
        argv += ["--setenv", key, value]
    return argv + [iso.python, *PYTHON_FLAGS, f"{BWRAP_SRC}/_runner.py", f"{BWRAP_SRC}/config.bin", str(result_fd)]


def sandbox_env(home: str) -> dict[str, str]:
    """The whole environment a program sees: no variable of the parent leaks in."""
    return {"PATH": PATH_ENV, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def build_launch(iso: Isolation, limits: SandboxLimits, src_dir: str, work_dir: str, result_fd: int,
                 uid: int | None) -> Launch:
    """How to start one program; ``uid`` is its dedicated uid (root only), ``work_dir`` its host cwd (fallback)."""
    if iso.mode == "bwrap":
        argv, env, cwd = bwrap_argv(iso, limits, src_dir, result_fd), {"PATH": PATH_ENV}, "/"
    else:
        argv = [iso.python, *PYTHON_FLAGS, f"{src_dir}/_runner.py", f"{src_dir}/config.bin", str(result_fd)]
        env, cwd = sandbox_env(work_dir), work_dir
        if uid is not None and iso.unshare_net:  # unshare drops the supplementary groups with --setgid
            return Launch(["unshare", "--net", "--setgid", str(uid), "--setuid", str(uid), "--", *argv], env, cwd)
    if uid is None:
        return Launch(argv, env, cwd)
    setpriv = shutil.which("setpriv")
    if setpriv:
        return Launch([setpriv, "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--", *argv], env, cwd)
    return Launch(argv, env, cwd, user=uid, group=uid, extra_groups=[])


def make_run_dir(uid: int | None) -> tuple[str, str, str]:
    """Create ``(root, src, work)``: src readable by the sandbox, work owned by it (fallback's cwd)."""
    root = tempfile.mkdtemp(prefix="thinkrl-sbx-")
    os.chmod(root, 0o711)
    src, work = os.path.join(root, "src"), os.path.join(root, "work")
    os.mkdir(src, 0o755)
    os.mkdir(work, 0o700)
    if uid is not None:
        os.chown(work, uid, uid)
    return root, src, work


def write_file(path: str, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) as a file the sandbox may read but not change."""
    with open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.chmod(path, 0o644)


# --- dedicated uids (root only) ---------------------------------------------------------------------------

_SWEPT: set[int] = set()
_NEXT_SLOT = itertools.count()


def _lock_dir() -> str:
    path = os.path.join(tempfile.gettempdir(), f"thinkrl-sandbox-uids-{os.geteuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise RuntimeError(f"sandbox lock directory {path} must be a private directory owned by uid {os.geteuid()}")
    return path


@contextlib.contextmanager
def uid_slot(limits: SandboxLimits) -> Iterator[int | None]:
    """Hold one dedicated uid for a program (an exclusive file lock, across processes); None when not root.

    Processes left under the uid by an earlier holder are killed at first use; the caller kills the
    program's processes after each run (on an exception this does).
    """
    if not is_root():
        yield None
        return
    lock_dir = _lock_dir()
    while True:
        # Round robin: a uid just used may keep killed orphans as zombies until init reaps them, and
        # zombies count against RLIMIT_NPROC; by the uid's next turn they are gone.
        first = next(_NEXT_SLOT)
        for slot in ((first + k) % limits.num_uids for k in range(limits.num_uids)):
            fd = os.open(os.path.join(lock_dir, f"{limits.uid_base + slot}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            uid = limits.uid_base + slot
            try:
                if uid not in _SWEPT:  # leftovers of an earlier process that crashed while holding the uid
                    kill_uid(uid)
                    _SWEPT.add(uid)
                yield uid
            except BaseException:
                kill_uid(uid)  # the caller sweeps after a normal run; make sure of it on errors too
                raise
            finally:
                os.close(fd)
            return
        time.sleep(0.01)


def _proc_uids(pid: str) -> tuple[set[int], bool]:
    """(real/effective/saved/fs uids, is_zombie) of a process; empty set when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return set(), False
    uids: set[int] = set()
    zombie = False
    for line in text.splitlines():
        if line.startswith("Uid:"):
            uids = {int(x) for x in line.split()[1:]}
        elif line.startswith("State:"):
            zombie = "Z" in line.split()[1]
    return uids, zombie


def pids_of_uid(uid: int, zombies: bool = False) -> list[int]:
    """Processes that hold ``uid`` as any of their uids: live ones, or with ``zombies`` only the zombies."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            uids, zombie = _proc_uids(name)
            if uid in uids and zombie == zombies:
                out.append(int(name))
    return out


def kill_uid(uid: int, max_rounds: int = 200) -> int:
    """SIGKILL every process under ``uid`` until none is left (a fork bomb is bounded by RLIMIT_NPROC).

    Returns how many kills were sent. Raises RuntimeError if processes survive ``max_rounds`` sweeps.
    """
    sent = 0
    for _ in range(max_rounds):
        pids = pids_of_uid(uid)
        if not pids:
            return sent
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                sent += 1
        time.sleep(0.002)
    raise RuntimeError(f"processes under sandbox uid {uid} survived {max_rounds} kill sweeps")


def kill_group(pid: int) -> None:
    """SIGKILL the process group (= session) led by ``pid``; a group already gone is fine."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise
