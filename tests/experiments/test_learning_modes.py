"""Splitting a protocol model's responses into terse and worked ones (`thinkrl.experiments.learning_modes`), checked
on hand-written responses with hand-computed shares and accuracies."""

from __future__ import annotations

import pytest

from thinkrl.experiments.learning_modes import response_mode, split_by_mode
from thinkrl.records import Trajectory
from thinkrl.tokenizer import SEED_TAGS


@pytest.mark.parametrize(("text", "mode"), [
    ("<seed:think></seed:think>\n20<seed:eos>", "terse"),
    ("<seed:think>\n</seed:think>\n20<seed:eos>", "terse"),  # whitespace is no working
    ("20<seed:eos>", "terse"),  # no thinking block at all
    ("<seed:think>6+2=8: 4*8\n4*8=32</seed:think>\n32<seed:eos>", "worked"),
    ("<seed:think>6+2=8: 4*8\n4*8=3", "unfinished"),  # cut by the length cap inside the thinking
])
def test_response_mode(text: str, mode: str) -> None:
    assert response_mode(text, SEED_TAGS) == mode


def _traj(text: str, correct: bool | None) -> Trajectory:
    return Trajectory(prompt_ids=[1], response_ids=[2], logprobs=[0.0], text=text, correct=correct)


def test_split_by_mode_matches_hand_counts() -> None:
    worked, terse = "<seed:think>1+2=3</seed:think>\n3", "<seed:think></seed:think>\n3"
    trajs = [_traj(worked, True), _traj(worked, False), _traj(terse, True), _traj(terse, False),
             _traj(terse, False), _traj("<seed:think>1+", False)]
    split = split_by_mode(trajs, SEED_TAGS)
    assert split.responses == 6
    assert (split.worked_share, split.terse_share, split.unfinished_share) == (2 / 6, 3 / 6, 1 / 6)
    assert split.accuracy == 2 / 6 and split.worked_accuracy == 1 / 2 and split.terse_accuracy == 1 / 3
    only_worked = split_by_mode([_traj(worked, True)], SEED_TAGS)
    assert only_worked.terse_accuracy is None and only_worked.worked_accuracy == 1.0


def test_unjudged_responses_are_refused() -> None:
    with pytest.raises(ValueError, match="judged"):
        split_by_mode([_traj("3", None)], SEED_TAGS)
