"""Hostile programs: each is contained, reported as a failure with its reason, and leaves no process behind.

Every test runs in each isolation mode available here. After each run the test looks for leftovers
itself (``ps``, independent of the sandbox's own cleanup): any live process under the sandbox's uids (as
root) or whose command line carries the test's marker. Network tests only connect to a listener the test
opens on 127.0.0.1. The weak non-root rlimits mode cannot contain some attacks: those tests skip there.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from thinkrl.rewards.sandbox import SandboxLimits, Status, resolve_isolation, run_program

pytestmark = pytest.mark.filterwarnings("ignore:sandbox:RuntimeWarning")
ROOT = os.geteuid() == 0


@pytest.fixture(params=["bwrap", "rlimits"], scope="module")
def limits(request, require_bwrap):
    lim = SandboxLimits(isolation=request.param, timeout_s=1.0, memory_mb=256, max_processes=16,
                        max_output_bytes=1 << 20)
    if request.param == "bwrap":
        require_bwrap(lim)
    else:
        resolve_isolation(lim)  # the weaker mode, chosen explicitly: runs wherever Python does
    return lim


@pytest.fixture(scope="module")
def bwrap_limits(require_bwrap):
    """The bubblewrap sandbox only: for what only it guarantees (its own filesystem view, no nested namespaces)."""
    lim = SandboxLimits(isolation="bwrap", timeout_s=1.0, memory_mb=256, max_processes=16, max_output_bytes=1 << 20)
    require_bwrap(lim)
    return lim


@pytest.fixture
def marker():
    return f"thinkrl-hostile-{uuid.uuid4().hex}"


def _weak(limits):
    """The non-root rlimits fallback: no uid switch, no namespaces."""
    return limits.isolation == "rlimits" and not ROOT


def leftovers(limits, marker=""):
    """Live processes under the sandbox uids, or whose command line contains ``marker``."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ruid=,euid=,stat=,args="], capture_output=True, text=True,
                         check=True).stdout
    found = []
    lo, hi = limits.uid_base, limits.uid_base + limits.num_uids
    for line in out.splitlines():
        pid, ruid, euid, stat, args = (line.split(None, 4) + [""])[:5]
        if stat.startswith("Z") or int(pid) == os.getpid():
            continue
        if (ROOT and (lo <= int(ruid) < hi or lo <= int(euid) < hi)) or (marker and marker in args):
            found.append(line.strip())
    return found


@pytest.fixture
def sentinel():
    """A process of ours that a hostile program must not be able to kill."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def run_hostile(code, limits, marker="", **kw):
    result = run_program(code, limits=limits.model_copy(update=kw) if kw else limits)
    assert leftovers(limits, marker) == []
    return result


def test_fork_bomb_is_bounded_and_cleaned_up(limits, sentinel):
    code = ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    result = run_hostile(code, limits)
    assert result.status is Status.TIMEOUT
    assert sentinel.poll() is None


def test_fork_bomb_children_hit_rlimit_nproc(limits):
    code = ("import os, time\nn = 0\nfor _ in range(100):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
            "    n += 1\nprint(n)\n")
    result = run_hostile(code, limits, timeout_s=3.0)
    assert result.status is Status.OK, result.reason
    assert int(result.stdout) < limits.max_processes


@pytest.mark.parametrize("code", [
    "x = bytearray(8 << 30)",
    "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))",
])
def test_memory_bomb(limits, code):
    result = run_hostile(code, limits, timeout_s=10.0)  # touching 256 MiB of pages takes a while under load
    assert result.status is Status.MEMORY, (result.status, result.reason)


def test_a_program_that_fills_memory_to_the_last_byte_is_reported_as_out_of_memory(limits):
    """Allocations halving down to 16 bytes leave no headroom: the runner's own report of the MemoryError (it imports
    json and traceback) must still get out, so the reason is the program's error, not the stderr fallback's."""
    code = ("hold = []\nsize = 16 << 20\nwhile size >= 16:\n    try:\n        hold.append(bytearray(size))\n"
            "    except MemoryError:\n        size //= 2\nraise MemoryError('full')\n")
    result = run_hostile(code, limits, timeout_s=10.0)
    assert result.status is Status.MEMORY, (result.status, result.reason)
    assert result.reason == "MemoryError: full"


def test_infinite_loop_with_children_kills_the_group(limits, marker):
    code = (f"import subprocess, sys\nfor _ in range(3):\n"
            f"    subprocess.Popen([sys.executable, '-c', 'while True: pass', '{marker}'])\nwhile True:\n    pass\n")
    result = run_hostile(code, limits, marker)
    assert result.status is Status.TIMEOUT


def test_sleep_in_detached_child_does_not_outlive_the_run(limits, marker):
    if _weak(limits):
        pytest.skip("non-root rlimits fallback cannot find a child that left the session")
    code = (f"import os, subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'],\n"
            f"                 start_new_session=True, stdin=subprocess.DEVNULL)\n"
            f"if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        import time\n"
            f"        time.sleep(60)\n    os._exit(0)\nprint('parent done')\n")
    result = run_hostile(code, limits, marker, timeout_s=20.0)
    # OK, not TIMEOUT: the run ended with its main process instead of waiting 60 s for the children
    assert result.status is Status.OK and result.stdout == "parent done\n"


def test_cannot_write_outside_its_directory(limits, tmp_path):
    if _weak(limits):
        pytest.skip("non-root rlimits fallback writes wherever the user can")
    private = tmp_path / "private"  # root-owned, 0o700
    private.mkdir(mode=0o700)
    targets = [private / "pwned", Path("/etc/thinkrl-pwned"), Path(__file__).with_name("pwned.py")]
    if limits.isolation == "bwrap":  # only bubblewrap makes world-writable directories read-only too
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        targets.append(shared / "pwned")
    code = ("import sys\nok = 0\nfor path in sys.argv[1:] or TARGETS:\n    try:\n"
            "        open(path, 'w').write('pwned')\n        print('WROTE', path)\n"
            "    except OSError as exc:\n        print('refused', path, type(exc).__name__)\n"
            "open('scratch.txt', 'w').write('mine')\nprint(open('scratch.txt').read())\n")
    result = run_hostile(f"TARGETS = {[str(t) for t in targets]!r}\n" + code, limits)
    assert result.status is Status.OK, result.stderr
    assert "WROTE" not in result.stdout and result.stdout.rstrip().endswith("mine")
    assert not any(t.exists() for t in targets)


def test_cannot_read_env_secrets_or_home_files(limits, monkeypatch):
    if _weak(limits):
        pytest.skip("non-root rlimits fallback reads whatever the user can")
    secret = uuid.uuid4().hex
    monkeypatch.setenv("THINKRL_TEST_SECRET", secret)
    home_dir = Path(tempfile.mkdtemp(dir=Path.home(), prefix=".thinkrl-sandbox-test-"))
    try:
        (home_dir / "id_rsa").write_text(secret)
        code = (f"import os, glob\nseen = [repr(dict(os.environ))]\n"
                f"for path in ['{home_dir}/id_rsa', '/proc/1/environ', '/proc/%d/environ' % os.getppid(),\n"
                f"             *glob.glob('/proc/*/environ')]:\n"
                f"    try:\n        seen.append(open(path, 'rb').read().decode('latin-1'))\n"
                f"    except OSError:\n        pass\n"
                f"print('\\n'.join(seen))\nprint(len(os.listdir(os.path.expanduser('~'))))\n")
        result = run_hostile(code, limits)
    finally:
        shutil.rmtree(home_dir)
    assert result.status is Status.OK, result.stderr
    assert secret not in result.stdout and "THINKRL_TEST_SECRET" not in result.stdout


def test_bwrap_sees_no_host_files_outside_the_system_directories(bwrap_limits, tmp_path):
    """Only /usr (and its merged-/usr links), a few loader files of /etc and the interpreter are bound: the
    repository, world-readable files elsewhere and /etc's host details are not there at all."""
    limits = bwrap_limits
    readable = tmp_path / "world_readable.txt"
    readable.write_text("host data")
    tmp_path.chmod(0o755)
    probes = [str(Path(__file__).resolve()), str(Path(__file__).resolve().parents[2]), str(readable),
              "/etc/hostname", "/etc/passwd", "/var", "/opt", "/srv"]
    code = (f"import os\nfor path in {probes!r}:\n    print(path, os.path.exists(path))\n"
            "import sys\nprint('ROOT', sorted(os.listdir('/')))\n"
            "print('PYTHON', os.path.realpath(sys.executable).split('/')[1])\n"
            "import subprocess\nprint(subprocess.run(['sh', '-c', 'echo shell-ok'], capture_output=True, "
            "text=True).stdout)\n")
    result = run_hostile(code, limits)
    assert result.status is Status.OK, result.stderr
    interpreter_top = result.stdout.split("PYTHON ")[1].split()[0]  # e.g. opt for /opt/python: bound, alone
    for path in probes:
        if path.split("/")[1] != interpreter_top:
            assert f"{path} False" in result.stdout, result.stdout
    assert "shell-ok" in result.stdout  # system programs still run
    listed = result.stdout.split("ROOT ")[1].splitlines()[0]
    for name in {"work", "home", "root", "var", "opt", "srv", "mnt", "media"} - {interpreter_top}:
        assert f"'{name}'" not in listed, listed


def test_cannot_connect_to_a_local_port(limits):
    if _weak(limits):
        pytest.skip("non-root rlimits fallback has the host's network")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.2)
        port = server.getsockname()[1]
        code = (f"import socket\ns = socket.socket()\ns.settimeout(0.5)\n"
                f"s.connect(('127.0.0.1', {port}))\ns.sendall(b'exfiltrated')\nprint('connected')\n")
        result = run_hostile(code, limits)
        with pytest.raises(TimeoutError):
            server.accept()
    assert result.status is Status.RUNTIME_ERROR
    assert "connected" not in result.stdout
    assert "ConnectionRefused" in result.reason or "unreachable" in result.reason


def test_cannot_kill_the_parent_or_other_processes(limits, sentinel):
    if _weak(limits):
        pytest.skip("non-root rlimits fallback runs as you: it could kill your processes")
    code = (f"import os, signal\nfor pid in (os.getppid(), {os.getpid()}, {sentinel.pid}, -1):\n"
            f"    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError as exc:\n"
            f"        print(pid, type(exc).__name__)\nprint('still here')\n")
    result = run_hostile(code, limits)
    assert sentinel.poll() is None  # and this test process is obviously alive
    assert result.status is Status.OK and "still here" in result.stdout


@pytest.mark.parametrize(("code", "stream"), [
    ("import sys\nchunk = 'x' * 65536\nwhile True:\n    sys.stdout.write(chunk)\n", "stdout"),
    ("import os\nchunk = b'e' * 65536\nwhile True:\n    os.write(2, chunk)\n", "stderr"),
])
def test_output_flood_is_cut_and_killed(limits, code, stream):
    result = run_hostile(code, limits, timeout_s=5.0)
    assert result.status is Status.OUTPUT_LIMIT and stream in result.reason
    assert len(getattr(result, stream)) <= limits.max_output_bytes


def test_closing_stdout_does_not_end_the_run_early(limits):
    code = "import os, time\nos.close(1)\nos.close(2)\nos.close(0)\ntime.sleep(30)\n"
    result = run_hostile(code, limits)
    assert result.status is Status.TIMEOUT


def test_recursion_limit_abuse(limits):
    code = ("import sys\nsys.setrecursionlimit(10**8)\n"
            "def f(n):\n    return f(n + 1) + 1\nf(0)\n")
    result = run_hostile(code, limits, timeout_s=10.0, memory_mb=64)
    assert result.status in (Status.MEMORY, Status.RUNTIME_ERROR), result.status
    assert result.reason


def test_default_recursion_limit_is_a_runtime_error(limits):
    result = run_hostile("def f(n):\n    return f(n + 1)\nf(0)\n", limits)
    assert result.status is Status.RUNTIME_ERROR and "RecursionError" in result.reason


def test_no_nested_user_namespace_under_bwrap(bwrap_limits):
    limits = bwrap_limits  # (only bubblewrap forbids them: the fallback is for hosts without user namespaces)
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "rc = libc.unshare(0x10000000)  # CLONE_NEWUSER\nprint(rc, os.strerror(ctypes.get_errno()))\n")
    result = run_hostile(code, limits)
    assert result.status is Status.OK, result.stderr
    assert result.stdout.startswith("-1 ")
