"""`thinkrl generate` runs offline on a tiny model folder and prints reasoning and answer."""

from __future__ import annotations

import json
import subprocess
import sys

from thinkrl.model import ModelConfig, build_model, save_pretrained


def test_generate_cli_prints_reasoning_and_answer(tmp_path):
    save_pretrained(build_model(ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=1), seed=0), tmp_path)
    base = [sys.executable, "-m", "thinkrl.cli", "generate", "--model", str(tmp_path), "--max-new-tokens", "12"]
    proc = subprocess.run([*base, "--prompt", "Compute 1+2.", "--prompt", "Compute 3*4.", "--json",
                           "--thinking-budget", "64"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["Compute 1+2.", "Compute 3*4."]
    assert all(r["finish_reason"] in ("stop", "length") and 1 <= r["num_tokens"] <= 12 for r in rows)
    text = subprocess.run([*base, "--prompt", "hi"], capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "### reasoning" in text.stdout and "### answer" in text.stdout
    bad = subprocess.run([*base[:-4], "--model", str(tmp_path / "missing"), "--prompt", "x"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "does not exist" in bad.stderr
