"""run_program / run_tests / SandboxPool in every isolation mode available here (bubblewrap, rlimits)."""

import os

import pytest

from thinkrl.rewards.sandbox import (
    CodeTests,
    SandboxLimits,
    SandboxPool,
    Status,
    TestCase,
    resolve_isolation,
    run_program,
    run_tests,
    tests_from_apps,
)
from thinkrl.rewards.sandbox import process as process_mod

pytestmark = pytest.mark.filterwarnings("ignore:sandbox:RuntimeWarning")


@pytest.fixture(params=["bwrap", "rlimits"], scope="module")
def limits(request, require_bwrap):
    lim = SandboxLimits(isolation=request.param, timeout_s=2.0, memory_mb=256, max_processes=16)
    if request.param == "bwrap":
        require_bwrap(lim)
    else:
        resolve_isolation(lim)  # the weaker mode, chosen explicitly: runs wherever Python does
    return lim


def test_stdin_to_stdout(limits):
    result = run_program("import sys\nprint(sys.stdin.read()[::-1], end='')", "héllo\n", limits=limits)
    assert result.status is Status.OK and result.exit_code == 0
    assert result.stdout == "\nolléh"
    assert result.isolation == limits.isolation


def test_large_stdin_and_stdout_do_not_deadlock(limits):
    data = "x" * (3 << 20)  # 3 MiB: far more than a pipe buffer, both ways
    result = run_program("import sys\nsys.stdout.write(sys.stdin.read())", data, limits=limits)
    assert result.status is Status.OK
    assert len(result.stdout) == len(data)


def test_program_sees_a_clean_environment_and_private_cwd(limits, monkeypatch):
    monkeypatch.setenv("THINKRL_SHOULD_NOT_LEAK", "1")
    code = "import os, json\nprint(json.dumps([sorted(os.environ), os.getcwd(), os.access('.', os.W_OK)]))"
    result = run_program(code, limits=limits)
    assert result.status is Status.OK, result.stderr
    names, cwd, writable = __import__("json").loads(result.stdout)
    assert "THINKRL_SHOULD_NOT_LEAK" not in names
    assert set(names) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PWD"}
    assert writable and cwd != os.getcwd()


@pytest.mark.parametrize(("code", "status", "reason"), [
    ("1/0", Status.RUNTIME_ERROR, "ZeroDivisionError: division by zero"),
    ("import sys\nsys.exit(3)", Status.RUNTIME_ERROR, "exit code 3"),
    ("def f(:\n", Status.RUNTIME_ERROR, "SyntaxError"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", Status.RUNTIME_ERROR, "killed by SIGSEGV"),
    ("x = bytearray(1 << 30)", Status.MEMORY, "MemoryError"),
    ("while True:\n    pass", Status.TIMEOUT, "wall-clock limit"),
])
def test_failures_have_status_and_reason(limits, code, status, reason):
    result = run_program(code, limits=limits.model_copy(update={"timeout_s": 1.0}))
    assert result.status is status
    assert reason in result.reason


def test_timeout_is_wall_clock_not_cpu(limits):
    result = run_program("import time\ntime.sleep(30)", limits=limits.model_copy(update={"timeout_s": 0.5}))
    assert result.status is Status.TIMEOUT and result.exit_code is None
    assert 0.5 <= result.wall_s < 0.5 + 10  # killed at its own deadline (generous slack for a loaded machine)


def test_bad_arguments():
    with pytest.raises(TypeError, match="code must be str"):
        run_program(b"print(1)")
    with pytest.raises(TypeError, match="stdin must be str or bytes"):
        run_program("print(1)", 3)


def test_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(process_mod, "_WARNED", set())
    monkeypatch.setattr(process_mod, "_CACHE", {})
    with pytest.warns(RuntimeWarning, match="rlimits-only fallback"):
        resolve_isolation(SandboxLimits(isolation="rlimits"))


# --- no bubblewrap: refuse unless the user opts in ------------------------------------------------------

NO_BWRAP = SandboxLimits(bwrap="/nonexistent/bwrap", timeout_s=5.0, memory_mb=300)
RLIMITS_PROBE = ("import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0] >> 20, "
                 "resource.getrlimit(resource.RLIMIT_NOFILE)[0])")


@pytest.fixture
def fresh_resolution(monkeypatch):
    """No cached isolation decision or warning from earlier tests, and no opt-in from the environment."""
    monkeypatch.setattr(process_mod, "_WARNED", set())
    monkeypatch.setattr(process_mod, "_CACHE", {})
    monkeypatch.delenv(process_mod.ALLOW_UNISOLATED_ENV, raising=False)
    return monkeypatch


def test_missing_bubblewrap_refuses_to_run_untrusted_code(fresh_resolution):
    with pytest.raises(RuntimeError, match=r"/nonexistent/bwrap.*refusing.*allow_unisolated=True.*"
                                           + process_mod.ALLOW_UNISOLATED_ENV):
        run_program("print('escaped')", limits=NO_BWRAP)
    with pytest.raises(RuntimeError, match="bubblewrap sandbox unavailable"):
        run_program("print(1)", limits=NO_BWRAP.model_copy(update={"isolation": "bwrap"}))


@pytest.mark.parametrize("opt_in", ["setting", "environment"])
def test_missing_bubblewrap_with_opt_in_runs_under_rlimits(fresh_resolution, opt_in):
    limits = NO_BWRAP
    if opt_in == "setting":
        limits = NO_BWRAP.model_copy(update={"allow_unisolated": True})
    else:
        fresh_resolution.setenv(process_mod.ALLOW_UNISOLATED_ENV, "1")
    with pytest.warns(RuntimeWarning, match="FALLING BACK to rlimits only"):
        result = run_program(RLIMITS_PROBE, limits=limits)
    assert result.status is Status.OK, result.stderr
    assert result.isolation == "rlimits"
    assert result.stdout.split() == ["300", str(limits.max_open_files)]  # a real child under the limits


def test_opt_in_does_not_replace_working_bubblewrap(fresh_resolution, require_bwrap):
    limits = SandboxLimits(allow_unisolated=True)
    require_bwrap(limits)
    assert run_program("print(1)", limits=limits).isolation == "bwrap"


# --- run_tests --------------------------------------------------------------------------------------------

ADD_STDIO = tests_from_apps({"inputs": ["1 2\n", "3 4\n", "-5 5\n"], "outputs": ["3\n", "7\n", "0\n"]})
ADD_CALL = CodeTests("call", (TestCase([1, 2], 3), TestCase([3, 4], 7), TestCase([-5, 5], 0)), fn_name="add")


def test_stdio_tests_pass_and_fail_with_reasons(limits):
    good = run_tests("a, b = map(int, input().split())\nprint(a + b)", ADD_STDIO, limits=limits)
    assert (good.passed, good.total, good.all_passed) == (3, 3, True)
    bad = run_tests("a, b = map(int, input().split())\nprint(a * b if a < 0 else a + b)", ADD_STDIO, limits=limits)
    assert (bad.passed, bad.fraction) == (2, 2 / 3)
    assert [r.status for r in bad.results] == [Status.PASSED, Status.PASSED, Status.WRONG_ANSWER]
    assert bad.results[2].reason == "expected '0', got '-25'"


def test_stop_on_failure_skips_the_rest(limits):
    report = run_tests("print(0)", ADD_STDIO, limits=limits, stop_on_failure=True)
    assert len(report.results) == 1 and report.passed == 0 and report.total == 3


def test_call_tests_function_and_solution_class(limits):
    plain = run_tests("def add(a, b):\n    return a + b", ADD_CALL, limits=limits)
    method = run_tests("class Solution:\n    def add(self, a, b):\n        return a + b", ADD_CALL, limits=limits)
    assert plain.all_passed and method.all_passed


def test_call_tests_survive_a_crash_and_a_hang_per_case(limits):
    code = ("import os\ndef add(a, b):\n"
            "    if a == 1:\n        os._exit(7)\n"
            "    if a == 3:\n        while True: pass\n"
            "    return a + b\n")
    report = run_tests(code, ADD_CALL, limits=limits.model_copy(update={"timeout_s": 1.0}))
    assert [r.status for r in report.results] == [Status.RUNTIME_ERROR, Status.TIMEOUT, Status.PASSED]
    assert report.results[0].reason == "exit code 7"


def test_call_tests_exceptions_and_wrong_values_are_per_case(limits):
    code = "def add(a, b):\n    if a == 3:\n        raise KeyError('k')\n    return a - b if a < 0 else a + b"
    report = run_tests(code, ADD_CALL, limits=limits)
    assert [r.status for r in report.results] == [Status.PASSED, Status.RUNTIME_ERROR, Status.WRONG_ANSWER]
    assert report.results[1].reason == "KeyError: 'k'"
    assert report.results[2].reason == "expected 0, got -10"


def test_call_tests_silent_exit_is_a_runtime_error(limits):
    code = "import os\ndef add(a, b):\n    if a == 3:\n        os._exit(0)\n    return a + b"
    report = run_tests(code, ADD_CALL, limits=limits)
    assert [r.status for r in report.results] == [Status.PASSED, Status.RUNTIME_ERROR, Status.PASSED]
    assert report.results[1].reason == "exited without a result"


def test_call_tests_missing_function_fails_all(limits):
    report = run_tests("def other(a, b):\n    return 0", ADD_CALL, limits=limits)
    assert report.passed == 0 and len(report.results) == 3
    assert all("function 'add' not found" in r.reason for r in report.results)


def test_script_test_needs_the_harness_to_finish(limits):
    tests = CodeTests("script", harness="assert add(2, 2) == 4\n")
    assert run_tests("def add(a, b):\n    return a + b", tests, limits=limits).all_passed
    wrong = run_tests("def add(a, b):\n    return a * b + 1", tests, limits=limits)
    assert wrong.results[0].status is Status.WRONG_ANSWER
    for early_exit in ("import sys\nsys.exit(0)", "import os\nos._exit(0)"):
        report = run_tests(early_exit + "\ndef add(a, b):\n    return 0", tests, limits=limits)
        assert not report.all_passed, early_exit


def test_pool_runs_concurrently_and_keeps_order(limits):
    # Each program prints when it started and ended sleeping (the wall clock is shared with the host).
    codes = [f"import time\nstart = time.time()\ntime.sleep(2)\nprint({i}, start, time.time())" for i in range(4)]
    with SandboxPool(4, limits=limits.model_copy(update={"timeout_s": 30.0})) as pool:
        results = pool.run_programs(codes)
        reports = pool.run_tests(["def add(a, b):\n    return a + b", "def add(a, b):\n    return 0"],
                                 [ADD_CALL, ADD_CALL])
    rows = [r.stdout.split() for r in results]
    assert [row[0] for row in rows] == ["0", "1", "2", "3"]
    starts, ends = [float(row[1]) for row in rows], [float(row[2]) for row in rows]
    assert max(starts) < min(ends)  # all four were sleeping at the same moment: they ran concurrently
    assert [r.passed for r in reports] == [3, 1]


def test_pool_validates_arguments(limits):
    with pytest.raises(ValueError, match="max_workers"):
        SandboxPool(0, limits=limits)
    with SandboxPool(1, limits=limits) as pool, pytest.raises(ValueError, match="2 programs but 1 stdins"):
        pool.run_programs(["", ""], [""])


@pytest.mark.skipif(os.geteuid() != 0, reason="uid switching is for root")
def test_uid_switch_uses_a_wrapper_so_popen_can_vfork(limits):
    from thinkrl.rewards.sandbox.isolation import build_launch

    launch = build_launch(resolve_isolation(limits), limits, "/src", "/work", 5, uid=limits.uid_base)
    assert launch.user is None and launch.extra_groups is None  # Popen(user=...) would fork a big parent
    wrapper = os.path.basename(launch.argv[0])
    assert wrapper in ("setpriv", "unshare") and str(limits.uid_base) in launch.argv
