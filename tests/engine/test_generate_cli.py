"""`thinkrl generate` runs offline on a tiny model folder and prints reasoning and answer."""

from __future__ import annotations

import json

import pytest

from cli_runner import run_thinkrl
from thinkrl.model import ModelConfig, build_model, save_pretrained


def test_generate_cli_prints_reasoning_and_answer(tmp_path):
    save_pretrained(build_model(ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=1), seed=0), tmp_path)
    base = ["generate", "--model", str(tmp_path), "--max-new-tokens", "12"]
    proc = run_thinkrl(*base, "--prompt", "Compute 1+2.", "--prompt", "Compute 3*4.", "--json", "--thinking-budget",
                       "64", timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["Compute 1+2.", "Compute 3*4."]
    assert all(r["finish_reason"] in ("stop", "length") and 1 <= r["num_tokens"] <= 12 for r in rows)
    text = run_thinkrl(*base, "--prompt", "hi", timeout=120)
    assert text.returncode == 0 and "### reasoning" in text.stdout and "### answer" in text.stdout
    bad = run_thinkrl(*base[:-4], "--model", str(tmp_path / "missing"), "--prompt", "x", timeout=120)
    assert bad.returncode != 0 and "does not exist" in bad.stderr



def test_generate_cli_enforces_the_thinking_budget(tmp_path):
    import shutil

    from thinkrl.tokenizer import load_tokenizer
    from thinkrl.tokenizer.text_tokenizer import BUILTIN_DIR

    save_pretrained(build_model(ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=1), seed=0), tmp_path / "m")
    # A Qwen3-style template: the generation prompt opens the thinking block, so the model thinks from its first
    # token (a random model never closes it by itself).
    builtin = load_tokenizer("builtin")
    shutil.copytree(BUILTIN_DIR, tmp_path / "tok")
    (tmp_path / "tok" / "chat_template.jinja").write_text(
        builtin.chat_template + "{% if add_generation_prompt %}" + builtin.think_tags.open + "{% endif %}")
    base = ["generate", "--model", str(tmp_path / "m"), "--tokenizer",
            str(tmp_path / "tok"), "--max-new-tokens", "60", "--json", "--prompt", "Compute 1+2.",
            "--thinking-budget", "3"]

    def run(*extra: str) -> dict:
        proc = run_thinkrl(*base, *extra, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    enforced, stated = run(), run("--no-budget-enforce")
    # Enforced: 3 thinking tokens, then the forced end of thinking (the exhausted sentence is a reflection, not
    # reasoning) and an answer. Only stated: the model thinks on to the token limit.
    assert len(builtin.encode(enforced["reasoning_content"])) <= 3, enforced
    assert enforced["num_tokens"] > 3 and enforced["content"], enforced
    assert stated["finish_reason"] == "length" and len(builtin.encode(stated["reasoning_content"])) > 30, stated
    bad = run_thinkrl(*base[:-1], "-5", timeout=120)
    assert bad.returncode == 2 and "thinking_budget" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(("flags", "message"), [
    (["--temperature", "nan"], "temperature must be a finite number"),
    (["--temperature", "inf"], "temperature must be a finite number"),
    (["--seed", "-1"], "--seed must be in"),
    (["--seed", str(10**23)], "--seed must be in"),
    (["--top-k", str(10**20)], "--top-k must be in"),
    (["--top-p", "0"], "top_p must be in (0, 1]"),
    (["--max-new-tokens", "100000000"], "exceeds the model's context of 4096 tokens"),
])
def test_generate_cli_refuses_sampling_options_that_cannot_work(tmp_path, flags, message):
    save_pretrained(build_model(ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=1), seed=0), tmp_path)
    proc = run_thinkrl("generate", "--model", str(tmp_path), "--prompt", "x", *flags, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
