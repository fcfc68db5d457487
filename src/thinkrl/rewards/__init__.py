"""Rewards: rule-based verification of completions (more verifiers and judges build on this)."""

from thinkrl.rewards.rule import RuleScore, score_response

__all__ = ["RuleScore", "score_response"]
