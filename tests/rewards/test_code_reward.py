"""Code rewards: code extraction from completions, all-pass and partial rewards, batch scoring."""

import json

import pytest

from thinkrl.rewards.code import code_reward, code_rewards, extract_code
from thinkrl.rewards.sandbox import CodeTests, SandboxLimits, SandboxPool, TestCase, tests_from_livecodebench

pytestmark = pytest.mark.filterwarnings("ignore:sandbox:RuntimeWarning")
LIMITS = SandboxLimits(timeout_s=2.0, allow_unisolated=True)  # our own test programs: rlimits will do without bwrap
SQUARE = tests_from_livecodebench({
    "public_test_cases": json.dumps([{"input": f"{n}\n", "output": f"{n * n}\n", "testtype": "stdin"}
                                     for n in (2, 3, -4, 0)]),
})
TWO_SUM = CodeTests("call", (TestCase([[2, 7, 11, 15], 9], [0, 1]), TestCase([[3, 2, 4], 6], [1, 2])),
                    fn_name="twoSum")


@pytest.mark.parametrize(("text", "code"), [
    ("Here:\n```python\nprint(1)\n```\nand better:\n```py\nprint(2)\n```\nDone.", "print(2)\n"),
    ("```\nplain()\n```\n```python\nmain()\n```\n```\nlater()\n```", "main()\n"),   # tagged beats untagged
    ("Only an untagged block:\n```\nx = 1\n```", "x = 1\n"),
    ("```Python3 title\nprint('hi')\n", "print('hi')\n"),                         # unclosed final fence
    ("print('bare code')\n", "print('bare code')\n"),                             # no fence: the whole text
])
def test_extract_code(text, code):
    assert extract_code(text) == code


def test_extract_code_of_huge_inputs():
    """Megabyte inputs, scanned in linear time (the fence regex was quadratic: 40,000 fences took 10 s)."""
    assert extract_code("```" * 400_000) == "```" * 400_000  # no fence ends a line: no block, the whole text
    assert extract_code("```py\nx = 1\n" + "```" * 400_000) == "x = 1\n"
    assert extract_code("```\n" * 200_000 + "```python\nok()") == "ok()\n"  # 100,000 empty blocks, then one


def test_extract_code_rejects_non_text():
    with pytest.raises(TypeError, match="text must be str"):
        extract_code(None)


def test_all_pass_reward_and_partial_fraction():
    right = "I square it.\n```python\nn = int(input())\nprint(n * n)\n```"
    half = "```python\nn = int(input())\nprint(n * n if n > 2 else n)\n```"
    assert code_reward(right, SQUARE, limits=LIMITS) == (1.0, "passed 4/4")
    reward, reason = code_reward(half, SQUARE, limits=LIMITS)
    assert reward == 0.0 and reason == "test 0: wrong_answer: expected '4', got '2'"
    reward, reason = code_reward(half, SQUARE, partial=True, limits=LIMITS)
    assert reward == 0.5 and reason.startswith("test 0: wrong_answer")  # right for n = 3 and n = 0 only


def test_failures_give_zero_with_reason():
    assert code_reward("", SQUARE, limits=LIMITS) == (0.0, "no code")
    reward, reason = code_reward("```python\nwhile True: pass\n```", SQUARE,
                                 limits=LIMITS.model_copy(update={"timeout_s": 0.5}))
    assert reward == 0.0 and reason == "test 0: timeout: wall-clock limit 0.5 s"


def test_batch_rewards_on_a_pool_keep_order():
    texts = [
        "```python\nclass Solution:\n    def twoSum(self, nums, target):\n"
        "        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
        "                return [seen[target - x], i]\n            seen[x] = i\n```",
        "no code at all? ```python\n```",
        "```python\ndef twoSum(nums, target):\n    return [0, 1]\n```",
    ]
    with SandboxPool(2, limits=LIMITS) as pool:
        rewards = code_rewards(texts, [TWO_SUM] * 3, partial=True, pool=pool)
        with pytest.raises(ValueError, match="3 completions but 1 test sets"):
            code_rewards(texts, [TWO_SUM], pool=pool)
    assert rewards == [(1.0, "passed 2/2"), (0.0, "no code"),
                       (0.5, "test 1: wrong_answer: expected [1, 2], got [0, 1]")]
