"""Model judges for what rules cannot score: a pairwise generative reward model and a generative answer verifier.

    scorer = LocalScorer(judge_model, tokenizer)                       # in process: packed forwards
    scorer = EndpointScorer("http://127.0.0.1:8000/v1", "judge")       # or any OpenAI-compatible server
    render = chat_prompt(tokenizer)                                    # the judge's chat template, budget 0
    verifier = GenerativeVerifier(scorer, render=render)
    verifier.prob_yes(questions, references, answers)                  # P(YES) per item
    judge = PairwiseJudge(scorer, render=render)
    judge.compare(prompts, responses_a, responses_b).prob_a_better     # both orders, averaged
    judge.group_rewards(prompt, group_responses)                       # mean win probability of each

Both judges ask one question whose answer is one of two *labels* and read the judge model's
next-token probabilities of the labels, normalised over the pair: the generative reward model of
Seed-Thinking-v1.5 (P("A") that response A is better than B) and a Seed-Verifier-style answer
checker (question, reference, answer -> P("YES")). `verify_with_fallback` runs the rule-based math
verifier first and asks the generative verifier only where the rule could not read an answer.

A *scorer* turns rendered prompts into label probabilities, in batches:

- `LocalScorer`: a thinkrl `CausalLM`; prompts are packed into forwards of at most
  ``max_batch_tokens``; a multi-token label's probability is the product over its tokens
  (teacher-forced), so labels need not be single tokens.
- `EndpointScorer`: ``POST {base_url}/completions`` with ``max_tokens=1`` and ``logprobs=k``
  (the legacy completions API: vLLM, SGLang, thinkrl serve); a label's probability is the sum over
  the returned top-k tokens that equal it after stripping spaces (so labels must be single tokens
  of the served model; a label outside the top k counts 0). Many prompts go in one request.

Position bias: a pairwise judge may prefer whichever response comes first. `PairwiseJudge.compare`
asks both orders and averages P(a better) over them, so swapping ``a`` and ``b`` gives exactly
``1 - p`` and two identical responses get exactly 0.5.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
import torch

from thinkrl.rewards.math import MathVerifier, verify_math
from thinkrl.tasks.external import fill_template
from thinkrl.tokenizer import TextTokenizer

if TYPE_CHECKING:  # only the type: rewards/ reaches models through what it is handed
    from thinkrl.model import CausalLM

logger = logging.getLogger(__name__)

VERIFIER_TEMPLATE = (
    "Check a student's answer against the reference answer.\n\nQuestion: {question}\n\n"
    "Reference answer: {reference}\n\nStudent answer: {answer}\n\n"
    "Is the student's answer equivalent to the reference answer? Reply with YES or NO only."
)
PAIRWISE_TEMPLATE = (
    "Compare two responses to the same prompt and decide which one is better: more correct, helpful and "
    "clear.\n\nPrompt: {prompt}\n\nResponse A:\n{response_a}\n\nResponse B:\n{response_b}\n\n"
    "Which response is better? Reply with A or B only."
)
FALLBACK_REASONS = ("wrong: no answer", "wrong: too large", "wrong: timeout", "wrong: error")


class LabelScorer(Protocol):
    """Probabilities that a judge model's next output is each label."""

    def label_probs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        """``out[i][j]`` = P(label j | prompt i) (not normalised over the labels)."""
        ...


def _check_labels(labels: Sequence[str]) -> list[str]:
    clean = [label.strip() if isinstance(label, str) else label for label in labels]
    if len(clean) < 2 or not all(isinstance(x, str) and x for x in clean) or len(set(clean)) != len(clean):
        raise ValueError(f"labels must be at least two distinct non-empty strings, got {list(labels)!r}")
    return clean


class LocalScorer:
    """Label probabilities from an in-process thinkrl model, with packed forwards.

    Args:
        model: the judge (any `CausalLM`; kept in eval mode, no gradients).
        tokenizer: its tokenizer; prompts are encoded as they are (special-token strings become ids).
        max_batch_tokens: most tokens in one packed forward (a longer single sequence goes alone).
    """

    def __init__(self, model: CausalLM, tokenizer: TextTokenizer, max_batch_tokens: int = 8192) -> None:
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        self.model, self.tokenizer, self.max_batch_tokens = model, tokenizer, max_batch_tokens

    def _label_ids(self, label: str) -> list[int]:
        ids = self.tokenizer.encode(label)
        if not ids:
            raise ValueError(f"label {label!r} encodes to no tokens")
        return ids

    @torch.inference_mode()
    def label_probs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        """``out[i][j]`` = P(label j | prompt i): one read per prompt when every label is one token, else
        one teacher-forced sequence per (prompt, label)."""
        label_ids = [self._label_ids(label) for label in _check_labels(labels)]
        prompt_ids = self.tokenizer.encode_batch(list(prompts)) if prompts else []
        seqs: list[list[int]] = []
        reads: list[tuple[int, int, int, int, int]] = []  # (sequence, position, target token, row, column)
        single = all(len(ids) == 1 for ids in label_ids)
        for row, ids in enumerate(prompt_ids):
            if not ids:
                raise ValueError(f"prompt {row} encodes to no tokens")
            if single:
                seqs.append(ids)
                reads += [(len(seqs) - 1, len(ids) - 1, lab[0], row, col) for col, lab in enumerate(label_ids)]
                continue
            for col, lab in enumerate(label_ids):
                seqs.append(ids + lab[:-1])
                reads += [(len(seqs) - 1, len(ids) - 1 + t, lab[t], row, col) for t in range(len(lab))]
        totals = torch.zeros(len(prompt_ids), len(label_ids), dtype=torch.float64)
        for chunk in _pack_chunks([len(s) for s in seqs], self.max_batch_tokens):
            self._score_chunk(seqs, chunk, [r for r in reads if r[0] in chunk], totals)
        return totals.exp().tolist()

    def _score_chunk(self, seqs: list[list[int]], chunk: dict[int, int],
                     reads: list[tuple[int, int, int, int, int]], totals: torch.Tensor) -> None:
        """Add the log-probs of ``reads`` (sequences of ``chunk``: index -> packed offset) into ``totals``."""
        device = self.model.device
        order = sorted(chunk, key=chunk.__getitem__)
        input_ids = torch.tensor([t for s in order for t in seqs[s]], device=device)  # [N]
        positions = torch.tensor([p for s in order for p in range(len(seqs[s]))], device=device)  # [N]
        lengths = torch.tensor([0] + [len(seqs[s]) for s in order])
        cu_seqlens = torch.cumsum(lengths, 0).to(device=device, dtype=torch.int32)  # [S+1]
        hidden = self.model(input_ids, positions, cu_seqlens).hidden  # [N, C]
        flat = torch.tensor([chunk[s] + pos for s, pos, _, _, _ in reads], device=device)  # [M]
        unique, inverse = torch.unique(flat, return_inverse=True)  # logits once per read position
        logprobs = torch.log_softmax(self.model.logits(hidden[unique]).float(), dim=-1)  # [U, V]
        targets = torch.tensor([r[2] for r in reads], device=device)
        picked = logprobs[inverse, targets].double().cpu()  # [M]
        rows = torch.tensor([r[3] for r in reads])
        cols = torch.tensor([r[4] for r in reads])
        totals.index_put_((rows, cols), picked, accumulate=True)


def _pack_chunks(lengths: list[int], max_tokens: int) -> list[dict[int, int]]:
    """Consecutive sequences grouped into chunks of at most ``max_tokens`` tokens: index -> offset in chunk."""
    chunks: list[dict[int, int]] = []
    current: dict[int, int] = {}
    used = 0
    for i, n in enumerate(lengths):
        if current and used + n > max_tokens:
            chunks.append(current)
            current, used = {}, 0
        current[i] = used
        used += n
    if current:
        chunks.append(current)
    return chunks


class EndpointScorer:
    """Label probabilities from an OpenAI-compatible completions endpoint (``top_logprobs`` of one token).

    Args:
        base_url: e.g. ``"http://127.0.0.1:8000/v1"``; requests go to ``{base_url}/completions``.
        model: the served model name.
        api_key: sent as a bearer token when set.
        top_logprobs: how many most likely tokens the server returns (vLLM allows 20 by default).
        batch_size: prompts per request; ``max_concurrency`` requests run at once.
        timeout_s: per-request timeout.
        client: an `httpx.Client` to reuse (else one is made and closed by `close`).
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, top_logprobs: int = 20,
                 batch_size: int = 16, max_concurrency: int = 4, timeout_s: float = 60.0,
                 client: httpx.Client | None = None) -> None:
        if top_logprobs < 1 or batch_size < 1 or max_concurrency < 1:
            raise ValueError(f"top_logprobs ({top_logprobs}), batch_size ({batch_size}) and max_concurrency "
                             f"({max_concurrency}) must be >= 1")
        self.url = base_url.rstrip("/") + "/completions"
        self.model, self.top_logprobs = model, top_logprobs
        self.batch_size, self.max_concurrency = batch_size, max_concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = client is None
        self.client = client or httpx.Client(timeout=timeout_s, headers=headers)

    def close(self) -> None:
        """Close the HTTP client if this scorer made it."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> EndpointScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def label_probs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[list[float]]:
        """``out[i][j]`` = summed probability of the top tokens of prompt i that equal label j (stripped)."""
        labels = _check_labels(labels)
        chunks = [list(prompts[i : i + self.batch_size]) for i in range(0, len(prompts), self.batch_size)]
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            tops = [top for part in pool.map(self._top_logprobs, chunks) for top in part]
        return [[sum(math.exp(lp) for token, lp in top.items() if token.strip() == label) for label in labels]
                for top in tops]

    def _top_logprobs(self, prompts: list[str]) -> list[dict[str, float]]:
        body = {"model": self.model, "prompt": prompts, "max_tokens": 1, "temperature": 0.0,
                "logprobs": self.top_logprobs}
        response = self.client.post(self.url, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"judge endpoint {self.url} answered {response.status_code}: {response.text[:300]}")
        try:
            choices = sorted(response.json()["choices"], key=lambda c: c["index"])
            tops = [choice["logprobs"]["top_logprobs"][0] for choice in choices]
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise ValueError(f"judge endpoint {self.url} returned no top_logprobs ({error!r}); it must support "
                             "'logprobs' in the completions API") from None
        if len(tops) != len(prompts) or not all(isinstance(t, dict) for t in tops):
            raise ValueError(f"judge endpoint {self.url} returned {len(tops)} choices for {len(prompts)} prompts")
        return tops


def chat_prompt(tokenizer: TextTokenizer, thinking_budget: int | None = 0) -> Callable[[str], str]:
    """A renderer: the judge question as one user turn of ``tokenizer``'s chat template, ready for the
    assistant's answer (budget 0: a reasoning judge answers at once, without thinking)."""
    def render(text: str) -> str:
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             thinking_budget=thinking_budget)
    return render


def _identity(text: str) -> str:
    return text


def _first_label_probability(probs: list[list[float]], what: str) -> list[float]:
    """P(first label) normalised over the two labels; 0.5 (with a warning) when neither was seen."""
    out = []
    for first, second in probs:
        total = first + second
        out.append(first / total if total > 0 else 0.5)
    undecided = sum(1 for first, second in probs if first + second <= 0)
    if undecided:
        logger.warning("%s: neither label among the judge's likely tokens for %d of %d prompts; scored 0.5",
                       what, undecided, len(probs))
    return out


def _check_template(template: str, required: Sequence[str]) -> str:
    missing = [name for name in required if "{" + name + "}" not in template]
    if missing:
        raise ValueError(f"judge template lacks the placeholder(s) {', '.join('{' + m + '}' for m in missing)}")
    return template


class GenerativeVerifier:
    """Seed-Verifier-style answer check: P(the judge says YES | question, reference, answer).

    ``template`` needs ``{reference}`` and ``{answer}`` (``{question}`` is optional); ``labels`` are
    (yes, no); ``render`` turns the filled template into the prompt text (e.g. `chat_prompt`).
    """

    def __init__(self, scorer: LabelScorer, template: str = VERIFIER_TEMPLATE, labels: tuple[str, str] = ("YES", "NO"),
                 render: Callable[[str], str] | None = None) -> None:
        self.scorer, self.template = scorer, _check_template(template, ("reference", "answer"))
        self.labels, self.render = labels, render or _identity

    def prob_yes(self, questions: Sequence[str], references: Sequence[str], answers: Sequence[str]) -> list[float]:
        """P(YES) / (P(YES) + P(NO)) for every (question, reference, answer), in one batched call."""
        if not len(questions) == len(references) == len(answers):
            raise ValueError(f"got {len(questions)} questions, {len(references)} references, {len(answers)} answers")
        prompts = [self.render(fill_template(self.template, question=q, reference=r, answer=a))
                   for q, r, a in zip(questions, references, answers, strict=True)]
        return _first_label_probability(self.scorer.label_probs(prompts, self.labels), "generative verifier")


@dataclass(frozen=True)
class PairwiseScores:
    """Pairwise judgements, one per (prompt, a, b).

    Fields:
        prob_a_better: the position-debiased P(a is better): the mean of the two below.
        prob_a_first: P(a better) with a shown as response A.
        prob_a_second: P(a better) with a shown as response B (1 - P(judge picks A) there).
    """

    prob_a_better: list[float]
    prob_a_first: list[float]
    prob_a_second: list[float]

    @property
    def position_bias(self) -> float:
        """Mean of prob_a_first - prob_a_second: > 0 when the judge favours the first slot."""
        n = max(1, len(self.prob_a_first))
        return sum(f - s for f, s in zip(self.prob_a_first, self.prob_a_second, strict=True)) / n


class PairwiseJudge:
    """Generative pairwise reward model: which of two responses to a prompt is better.

    ``template`` needs ``{response_a}`` and ``{response_b}`` (``{prompt}`` is optional); ``labels``
    are (A, B); ``render`` turns the filled template into the prompt text.
    """

    def __init__(self, scorer: LabelScorer, template: str = PAIRWISE_TEMPLATE, labels: tuple[str, str] = ("A", "B"),
                 render: Callable[[str], str] | None = None) -> None:
        self.scorer, self.template = scorer, _check_template(template, ("response_a", "response_b"))
        self.labels, self.render = labels, render or _identity

    def compare(self, prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]) -> PairwiseScores:
        """Both orders of every pair in one batched call; see `PairwiseScores`."""
        if not len(prompts) == len(responses_a) == len(responses_b):
            raise ValueError(f"got {len(prompts)} prompts, {len(responses_a)} and {len(responses_b)} responses")
        texts = [self.render(fill_template(self.template, prompt=p, response_a=first, response_b=second))
                 for order in ((responses_a, responses_b), (responses_b, responses_a))
                 for p, first, second in zip(prompts, *order, strict=True)]
        picks_a = _first_label_probability(self.scorer.label_probs(texts, self.labels), "pairwise judge")
        n = len(prompts)
        first = picks_a[:n]
        second = [1.0 - p for p in picks_a[n:]]
        return PairwiseScores([(f + s) / 2 for f, s in zip(first, second, strict=True)], first, second)

    def group_rewards(self, prompt: str, responses: Sequence[str]) -> list[float]:
        """Reward of each response in a group: its mean debiased win probability against every other
        (round robin; ``n (n - 1)`` judge prompts). A group of one gets 0.5."""
        n = len(responses)
        if n < 2:
            return [0.5] * n
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        scores = self.compare([prompt] * len(pairs), [responses[i] for i, _ in pairs],
                              [responses[j] for _, j in pairs]).prob_a_better
        wins = [0.0] * n
        for (i, j), p in zip(pairs, scores, strict=True):
            wins[i] += p
            wins[j] += 1.0 - p
        return [w / (n - 1) for w in wins]


@dataclass(frozen=True)
class JudgedVerdict:
    """A math verdict from the rule verifier, or from the generative verifier where the rule could not read one.

    Fields:
        correct: the final judgement.
        reason: the rule verifier's reason, or "judge: yes" / "judge: no".
        source: "rule" or "judge".
        prob_yes: the generative verifier's P(YES) (None for rule verdicts).
    """

    correct: bool
    reason: str
    source: Literal["rule", "judge"]
    prob_yes: float | None = None


def _answer_tail(response: str, max_chars: int) -> str:
    lines = [line.strip() for line in response.splitlines() if line.strip()]
    return (lines[-1] if lines else "")[-max_chars:]


def verify_with_fallback(questions: Sequence[str], responses: Sequence[str], references: Sequence[str],
                         judge: GenerativeVerifier, *, verifier: MathVerifier | None = None,
                         fallback_reasons: Sequence[str] = FALLBACK_REASONS, threshold: float = 0.5,
                         max_answer_chars: int = 300, **verify_kwargs: Any) -> list[JudgedVerdict]:
    """Rule-based math verdicts, with the generative verifier deciding the items whose rule verdict's
    reason is in ``fallback_reasons`` (by default: nothing extracted, too large, timed out, crashed).

    ``responses`` are answer parts (after the thinking block). The judge sees the rule's extracted
    answer, or else the response's last non-empty line (at most ``max_answer_chars``); it says
    correct when P(YES) >= ``threshold``. ``verifier`` (a `MathVerifier`) scores the batch in
    parallel; without it each item goes through `verify_math`. ``verify_kwargs`` go to the rule
    verifier (``timeout_s``, ``rel_tol``).
    """
    if not len(questions) == len(responses) == len(references):
        raise ValueError(f"got {len(questions)} questions, {len(responses)} responses, {len(references)} references")
    pairs = list(zip(responses, references, strict=True))
    rule = (verifier.verify_batch(pairs, **verify_kwargs) if verifier is not None
            else [verify_math(r, ref, **verify_kwargs) for r, ref in pairs])
    todo = [i for i, v in enumerate(rule) if v.reason in fallback_reasons]
    answers = [rule[i].extracted or _answer_tail(responses[i], max_answer_chars) for i in todo]
    probs = judge.prob_yes([questions[i] for i in todo], [references[i] for i in todo], answers) if todo else []
    out = [JudgedVerdict(v.correct, v.reason, "rule") for v in rule]
    for i, p in zip(todo, probs, strict=True):
        out[i] = JudgedVerdict(p >= threshold, "judge: yes" if p >= threshold else "judge: no", "judge", p)
    return out
