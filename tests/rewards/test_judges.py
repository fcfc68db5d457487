"""Model judges: label probabilities (packed = naive forward), a micro judge trained here end to end, the
OpenAI-compatible endpoint path against a real HTTP server on 127.0.0.1, position-bias removal, fallback.

The micro judge (~0.1M parameters, ~200 full-batch steps) learns two tiny judging tasks:
- verifier: ``={reference}{answer}`` -> ``YES`` when the two letters (a b c f g) are equal, else ``NO``;
- pairwise: ``?{response_a}{response_b}`` -> ``A`` when digit a >= b (ties: ``A``, a deliberate
  position bias), else ``B``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
import torch.nn.functional as F

from thinkrl.model import CausalLM, ModelConfig, build_model
from thinkrl.rewards.judges import (
    EndpointScorer,
    GenerativeVerifier,
    LocalScorer,
    PairwiseJudge,
    chat_prompt,
    verify_with_fallback,
)
from thinkrl.tokenizer import load_tokenizer

TOKENIZER = load_tokenizer("builtin")
VERIFY = "={reference}{answer}"
PAIR = "?{response_a}{response_b}"
LETTERS = "abcfg"  # no two of them merge into one token after "="
DIGITS = "01234"


def _micro(hidden: int = 64, seed: int = 0) -> CausalLM:
    config = ModelConfig.from_hf_dict({
        "architectures": ["LlamaForCausalLM"], "vocab_size": TOKENIZER.vocab_size, "hidden_size": hidden,
        "intermediate_size": 4 * hidden, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "tie_word_embeddings": True, "bos_token_id": TOKENIZER.bos_token_id,
        "eos_token_id": TOKENIZER.eos_token_id, "pad_token_id": TOKENIZER.pad_token_id})
    return build_model(config, seed=seed)


def _training_set() -> list[tuple[str, str]]:
    data = []
    for r in range(5):
        for x in range(5):  # matching pairs repeated so YES and NO are balanced
            data += [(VERIFY.format(reference=LETTERS[r], answer=LETTERS[x]), "YES" if r == x else "NO")] * (
                4 if r == x else 1)
            data.append((PAIR.format(response_a=DIGITS[r], response_b=DIGITS[x]), "A" if r >= x else "B"))
    return data


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny ops: one thread is fastest here and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def judge_model(one_thread) -> CausalLM:
    """The micro judge, trained full-batch on every example (next-token loss on the label tokens)."""
    model = _micro()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seqs, targets, reads, offset = [], [], [], 0
    for text, label in _training_set():
        prompt, answer = TOKENIZER.encode(text), TOKENIZER.encode(label)
        seqs.append(prompt + answer)
        reads += [offset + len(prompt) - 1 + t for t in range(len(answer))]
        targets += answer
        offset += len(prompt) + len(answer)
    input_ids = torch.tensor([t for s in seqs for t in s])
    positions = torch.tensor([p for s in seqs for p in range(len(s))])
    cu_seqlens = torch.tensor([0] + [len(s) for s in seqs]).cumsum(0)
    reads_t, targets_t = torch.tensor(reads), torch.tensor(targets)
    for _ in range(200):
        hidden = model(input_ids, positions, cu_seqlens).hidden[reads_t]
        loss = F.cross_entropy(model.logits(hidden).float(), targets_t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final_loss = loss.item()
    assert final_loss < 0.05, f"the micro judge did not learn (loss {final_loss:.3f})"
    return model.eval()


# --- label probabilities -------------------------------------------------------------------------------------


def _naive_label_probs(model: CausalLM, prompts: list[str], labels: list[str]) -> list[list[float]]:
    """One unpacked forward per (prompt, label token): an independent reference."""
    out = []
    with torch.no_grad():
        for prompt in prompts:
            row = []
            for label in labels:
                ids, logprob = TOKENIZER.encode(prompt), 0.0
                for token in TOKENIZER.encode(label):
                    hidden = model(torch.tensor(ids), torch.arange(len(ids)), torch.tensor([0, len(ids)])).hidden
                    logprob += float(torch.log_softmax(model.logits(hidden[-1]).float(), -1)[token])
                    ids = ids + [token]
                row.append(logprob)
            out.append([float(torch.tensor(lp).exp()) for lp in row])
    return out


@pytest.mark.parametrize("labels", [["A", "B"], ["YES", "NO", "maybe"]])
def test_packed_label_probs_equal_a_naive_forward(labels: list[str]) -> None:
    model = _micro(hidden=32, seed=3).eval()
    prompts = ["Is 2+2 4?", "x", "A longer prompt with <seed:eos> a special token in it."]
    expected = _naive_label_probs(model, prompts, labels)
    for max_tokens in (4096, 7):  # one packed forward, and one sequence per forward
        got = LocalScorer(model, TOKENIZER, max_batch_tokens=max_tokens).label_probs(prompts, labels)
        assert torch.allclose(torch.tensor(got), torch.tensor(expected), rtol=1e-4, atol=1e-9)
    assert LocalScorer(model, TOKENIZER).label_probs([], labels) == []
    with pytest.raises(ValueError, match="distinct"):
        LocalScorer(model, TOKENIZER).label_probs(prompts, ["A", " A "])


# --- the trained judge ---------------------------------------------------------------------------------------------


def test_generative_verifier_separates_matching_answers(judge_model) -> None:
    verifier = GenerativeVerifier(LocalScorer(judge_model, TOKENIZER), template=VERIFY)  # labels YES/NO: 3 + 2 tokens
    refs, answers = zip(*[(r, a) for r in LETTERS for a in LETTERS], strict=True)
    probs = verifier.prob_yes([""] * len(refs), refs, answers)
    same = [p for p, r, a in zip(probs, refs, answers, strict=True) if r == a]
    different = [p for p, r, a in zip(probs, refs, answers, strict=True) if r != a]
    assert min(same) > max(different)
    assert sum(same) / len(same) > 0.9 and sum(different) / len(different) < 0.1


def test_pairwise_judge_prefers_the_better_response_and_removes_position_bias(judge_model) -> None:
    judge = PairwiseJudge(LocalScorer(judge_model, TOKENIZER), template=PAIR)
    better, worse = zip(*[(a, b) for a in DIGITS for b in DIGITS if a > b], strict=True)
    forward = judge.compare([""] * len(better), better, worse)
    backward = judge.compare([""] * len(better), worse, better)
    assert min(forward.prob_a_better) > 0.8
    for p, q in zip(forward.prob_a_better, backward.prob_a_better, strict=True):
        assert p + q == pytest.approx(1.0, abs=1e-12)  # swapping the pair gives exactly 1 - p
    ties = judge.compare([""] * 5, list(DIGITS), list(DIGITS))
    assert min(ties.prob_a_first) > 0.8 and max(ties.prob_a_second) < 0.2  # the judge favours slot A...
    assert ties.prob_a_better == pytest.approx([0.5] * 5, abs=1e-12)  # ...which averaging both orders removes
    assert ties.position_bias > 0.6
    rewards = judge.group_rewards("", ["0", "3", "1", "3"])
    assert rewards[1] == pytest.approx(rewards[3]) and rewards[1] > rewards[2] > rewards[0]
    assert sum(rewards) == pytest.approx(2.0)  # each of the 6 pairs hands out 1 win over n - 1 = 3 games
    assert judge.group_rewards("", ["7"]) == [0.5]


def test_templates_and_inputs_are_checked(judge_model) -> None:
    scorer = LocalScorer(judge_model, TOKENIZER)
    with pytest.raises(ValueError, match=r"\{answer\}"):
        GenerativeVerifier(scorer, template="{reference} only")
    with pytest.raises(ValueError, match=r"\{response_b\}"):
        PairwiseJudge(scorer, template="{response_a}")
    with pytest.raises(ValueError, match="2 questions, 1 references"):
        GenerativeVerifier(scorer, template=VERIFY).prob_yes(["q", "q"], ["a"], ["a"])
    rendered = chat_prompt(TOKENIZER)("Is a equal to a?")
    assert rendered.startswith("<seed:bos>system") and rendered.endswith("</seed:think>")


# --- OpenAI-compatible endpoint ----------------------------------------------------------------------------------


class _CompletionsServer:
    """A minimal ``/v1/completions`` server (stdlib) over a thinkrl model: one token, top-k logprobs."""

    def __init__(self, model: CausalLM, broken: str | None = None) -> None:
        self.model, self.broken, self.requests = model, broken, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append((self.path, body))
                status, payload = owner.answer(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, body: dict) -> tuple[int, dict]:
        if self.broken == "status":
            return 500, {"error": "model crashed"}
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = []
        with torch.no_grad():
            for i, prompt in enumerate(prompts):
                ids = TOKENIZER.encode(prompt)
                hidden = self.model(torch.tensor(ids), torch.arange(len(ids)), torch.tensor([0, len(ids)])).hidden
                top = torch.log_softmax(self.model.logits(hidden[-1]).float(), -1).topk(body["logprobs"])
                tokens = {TOKENIZER.decode([t]): lp for lp, t in zip(top.values.tolist(), top.indices.tolist(),
                                                                     strict=True)}
                best = next(iter(tokens))
                logprobs = {"tokens": [best], "token_logprobs": [tokens[best]], "top_logprobs": [tokens],
                            "text_offset": [0]}
                choices.append({"index": i, "text": best, "finish_reason": "length",
                                "logprobs": None if self.broken == "logprobs" else logprobs})
        return 200, {"id": "cmpl-test", "object": "text_completion", "model": body["model"],
                     "choices": choices[::-1]}  # out of order on purpose: clients must sort by index

    def __enter__(self) -> _CompletionsServer:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(judge_model) -> Iterator[_CompletionsServer]:
    with _CompletionsServer(judge_model) as running:
        yield running


def test_endpoint_scorer_matches_the_local_scorer(judge_model, server) -> None:
    refs, answers = zip(*[(r, a) for r in LETTERS for a in LETTERS], strict=True)
    local = GenerativeVerifier(LocalScorer(judge_model, TOKENIZER), template=VERIFY, labels=("Y", "N"))
    with EndpointScorer(server.url, "micro-judge", batch_size=4, top_logprobs=5) as scorer:
        remote = GenerativeVerifier(scorer, template=VERIFY, labels=("Y", "N"))
        got = remote.prob_yes([""] * 25, refs, answers)
    assert got == pytest.approx(local.prob_yes([""] * 25, refs, answers), abs=1e-3)
    prompts = [VERIFY.format(reference=r, answer=a) for r, a in zip(refs, answers, strict=True)]
    batches = {tuple(body["prompt"]) for _, body in server.requests}  # sent concurrently: any order
    assert batches == {tuple(prompts[i : i + 4]) for i in range(0, 25, 4)} and len(server.requests) == 7
    path, body = server.requests[0]
    assert path == "/v1/completions" and body["max_tokens"] == 1 and body["logprobs"] == 5
    assert body["model"] == "micro-judge" and body["temperature"] == 0.0
    raw = EndpointScorer(server.url, "micro-judge").label_probs(["=aa", "=ab"], ["Y", "N"])
    direct = LocalScorer(judge_model, TOKENIZER).label_probs(["=aa", "=ab"], ["Y", "N"])
    assert torch.allclose(torch.tensor(raw), torch.tensor(direct), rtol=1e-4)  # both labels are in the top 20


@pytest.mark.parametrize(("broken", "error", "message"), [
    ("status", RuntimeError, "answered 500: .*model crashed"),
    ("logprobs", ValueError, "returned no top_logprobs"),
])
def test_endpoint_errors_are_clear(judge_model, broken, error, message) -> None:
    with (_CompletionsServer(judge_model, broken=broken) as running, EndpointScorer(running.url, "m") as scorer,
          pytest.raises(error, match=message)):
        scorer.label_probs(["=aa"], ["Y", "N"])


# --- rule verifier with a generative fallback ------------------------------------------------------------------


def test_fallback_asks_the_judge_only_where_the_rule_reads_no_answer(judge_model) -> None:
    judge = GenerativeVerifier(LocalScorer(judge_model, TOKENIZER), template=VERIFY)
    responses = ["so \\boxed{b}", "so \\boxed{c}", "it is\nb", "it is\nc"]
    verdicts = verify_with_fallback([""] * 4, responses, ["b"] * 4, judge)
    assert [(v.source, v.correct) for v in verdicts] == [("rule", True), ("rule", False), ("judge", True),
                                                         ("judge", False)]
    assert verdicts[1].reason == "wrong: value" and verdicts[2].reason == "judge: yes"
    assert verdicts[2].prob_yes > 0.9 > 0.1 > verdicts[3].prob_yes
