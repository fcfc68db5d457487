"""Cold-start SFT data for tool use: an environment's worked transcripts, tokenised the way episodes are sampled.

An example is the opening prompt (tools in the system turn, as `render_episode_prompt` renders it) followed by
alternating pieces: an assistant turn up to the end of its tool call (loss mask True: the tokens a policy samples)
and the tool turn after it (mask False: the tokens `thinkrl.rollout.multiturn` appends as forced), then the final
assistant turn with its end-of-turn token (True). Each piece is the chat template's own rendering of the
conversation, cut where the multi-turn loop cuts it, and encoded on its own, so an SFT example is token for token
what an episode with the same text holds (tested).
"""

from __future__ import annotations

import random
from typing import Any

from thinkrl.rollout.environments import Environment, Message
from thinkrl.tasks import Problem, get_task
from thinkrl.tokenizer import TextTokenizer

Example = tuple[list[int], list[bool]]


def transcript_pieces(tokenizer: TextTokenizer, opening: list[Message], turns: list[Message],
                      tools: list[dict[str, Any]] | None, thinking_budget: int = -1) -> list[tuple[str, bool]]:
    """``(text, trained)`` pieces of a whole conversation: the prompt (False), then per assistant turn its text
    up to its last tool-call closing tag (True) and what follows up to the next generation prompt (False); the
    final assistant turn (True).

    Raises:
        ValueError: the template renders a prefix of the conversation inconsistently with the whole.
    """
    close = tokenizer.think_tags.tool_close

    def render(messages: list[Message], generation: bool) -> str:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=generation,
                                             thinking_budget=thinking_budget, tools=tools)

    history = list(opening)
    pieces: list[tuple[str, bool]] = []
    done = ""
    for index, message in enumerate(turns):
        if message["role"] != "assistant":
            history.append(message)
            continue
        prompt = render(history, True)
        whole = render(history + [message], False)
        if not prompt.startswith(done) or not whole.startswith(prompt):
            raise ValueError("the chat template renders a conversation prefix inconsistently")
        pieces.append((prompt[len(done):], False))
        turn = whole[len(prompt):]
        if message.get("tool_calls"):
            turn = turn[: turn.rfind(close) + len(close)]
        pieces.append((turn, True))
        done = prompt + turn
        history.append(message)
        if index == len(turns) - 1 and message.get("tool_calls"):
            raise ValueError("a transcript must end with an assistant turn without tool calls")
    return [(text, trained) for text, trained in pieces if text]


def encode_pieces(tokenizer: TextTokenizer, pieces: list[tuple[str, bool]]) -> Example:
    """Token ids and the loss mask of ``pieces`` (each piece encoded on its own)."""
    ids: list[int] = []
    mask: list[bool] = []
    for text, trained in pieces:
        piece = tokenizer.encode(text)
        ids += piece
        mask += [trained] * len(piece)
    return ids, mask


def build_agent_sft_examples(tokenizer: TextTokenizer, env: Environment, problems: list[Problem], *, seed: int,
                             noise: float = 0.0, without_tools: float = 0.0) -> list[Example]:
    """One example per problem: the environment's transcript with tools, or (with probability
    ``without_tools``) the task's own trace answered without tools (no tools in the prompt)."""
    rng = random.Random(seed)
    task = get_task(env.task)
    examples = []
    for problem in problems:
        opening = env.messages(problem)
        if rng.random() < without_tools:
            trace = task.write_trace(problem, rng, noise=noise)
            turns = [{"role": "assistant", "content": f"Answer: {trace.answer}", "reasoning_content": trace.thinking}]
            pieces = transcript_pieces(tokenizer, opening, turns, None)
        else:
            pieces = transcript_pieces(tokenizer, opening, env.write_transcript(problem, rng, noise),
                                       env.tool_schemas())
        examples.append(encode_pieces(tokenizer, pieces))
    return examples
