"""Bad input at the command line is one line on stderr naming what is wrong, exit status 2, no traceback, and nothing
written: paths of the wrong kind, devices this machine lacks, damaged weights, unknown tasks in a JSONL file,
non-finite recipe numbers, bad flags of serve, tune, eval, train, demo, ablate, learn and bench."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from cli_runner import run_thinkrl
from thinkrl.model import ModelConfig, build_model, save_pretrained

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1)
UNKNOWN_TASK = '{"task": "chess", "id": "ab", "prompt": "p", "ground_truth": {"answer": 1}, "difficulty": {}}\n'


def thinkrl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_thinkrl(*args, cwd=cwd, timeout=300)


def refused(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """The one stderr line of a command that refused its input (exit 2, no traceback)."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"thinkrl {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model")
    save_pretrained(build_model(CFG, seed=0), path)
    return path


def test_a_folder_where_a_file_is_written_is_bad_input(tmp_path: Path) -> None:
    line = refused(thinkrl("data", "arithmetic", "--n", "2", "--out", str(tmp_path), cwd=tmp_path), "data")
    assert f"Is a directory: '{tmp_path}'" in line
    (tmp_path / "file").write_text("keep")
    line = refused(thinkrl("eval", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--task", "arithmetic",
                           "--n", "2", "--out", str(tmp_path / "file"), cwd=tmp_path), "eval")
    assert f"File exists: '{tmp_path / 'file'}'" in line
    assert (tmp_path / "file").read_text() == "keep"


@pytest.mark.parametrize(("device", "message"), [
    ("cuda:99", "device 'cuda:99' is not available: this machine has"),
    ("bogus", "device 'bogus' is not a torch device; use auto, cpu, cuda, cuda:N or mps"),
    ("cuda:x", "device 'cuda:x' is not a torch device"),
])
def test_a_device_this_machine_lacks_is_named(model_dir: Path, tmp_path: Path, device: str, message: str) -> None:
    proc = thinkrl("generate", "--model", str(model_dir), "--prompt", "hi", "--device", device, cwd=tmp_path)
    assert message in refused(proc, "generate")


def test_truncated_weights_name_the_file(model_dir: Path, tmp_path: Path) -> None:
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = refused(thinkrl("serve", "--model", str(tmp_path), "--device", "cpu", cwd=tmp_path), "serve")
    assert f"{weights} is not a valid safetensors file (truncated or damaged?)" in line


def test_a_problem_file_naming_an_unknown_task_is_refused_at_load(model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text(UNKNOWN_TASK)
    line = refused(thinkrl("eval", "--model", str(model_dir), "--data", str(data), cwd=tmp_path), "eval")
    assert f"{data}:line 1: unknown task 'chess'; registered: arithmetic," in line


@pytest.mark.parametrize("value", [".inf", "-.inf", "inf"])
def test_recipe_numbers_must_be_finite(tmp_path: Path, value: str) -> None:
    line = refused(thinkrl("sft", str(RECIPES / "tiny_sft.yaml"), f"optim.lr={value}", cwd=tmp_path), "sft")
    assert "optim.lr: Input should be a finite number" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--port", "70000"], "--port must be in 0..65535, got 70000"),
    (["--max-seq-len", "0"], "--max-seq-len must be >= 2 (a prompt token and a completion token), got 0"),
    (["--max-request-bytes", "0"], "--max-request-bytes must be >= 1, got 0"),
    (["--host", "no-such-host.invalid"], "--host 'no-such-host.invalid' cannot be resolved"),
    (["--max-seq-len", "100000000000"], "--max-seq-len 100000000000 exceeds the model's context of 4096 tokens"),
])
def test_serve_flags_that_cannot_work_are_refused_before_loading(model_dir: Path, tmp_path: Path, flags: list[str],
                                                                 message: str) -> None:
    proc = thinkrl("serve", "--model", str(model_dir), "--device", "cpu", *flags, cwd=tmp_path)
    assert message in refused(proc, "serve")


@pytest.mark.parametrize(("flags", "message"), [
    (["--tp", "0"], "search.tp.0: Input should be greater than 0"),
    (["--tp", ","], "search.tp: List should have at least 1 item"),
    (["--micro-batch-tokens", "-5"], "search.micro_batch_tokens.0: Input should be greater than 0"),
])
def test_tune_search_values_must_be_positive(tmp_path: Path, flags: list[str], message: str) -> None:
    proc = thinkrl("tune", "--model", "seed-oss-36b", "--gpus", "8", *flags, cwd=tmp_path)
    assert message in refused(proc, "tune")


def test_tune_profile_refuses_a_device_it_cannot_measure(tmp_path: Path) -> None:
    proc = thinkrl("tune", "profile", "--model", "seed-oss-36b", "--gpus", "1", "--device", "cuda:99", "--out",
                   str(tmp_path / "p.json"), cwd=tmp_path)
    assert "device 'cuda:99' is not available" in refused(proc, "tune")
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--resume"], "--resume needs --out DIR (the harness run to continue)"),
    (["--temperature", "nan"], "--temperature must be a number >= 0, got nan"),
    (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
])
def test_eval_flags_a_local_run_would_ignore_are_refused(model_dir: Path, tmp_path: Path, flags: list[str],
                                                         message: str) -> None:
    proc = thinkrl("eval", "--model", str(model_dir), "--task", "arithmetic", "--n", "2", *flags, cwd=tmp_path)
    assert message in refused(proc, "eval")


def test_train_refuses_ray_placement_flags_without_ray(tmp_path: Path) -> None:
    proc = thinkrl("train", str(RECIPES / "tiny_dapo.yaml"), "--trainers", "2", "--gpus-per-trainer", "1",
                   cwd=tmp_path)
    assert "--trainers, --gpus-per-trainer only apply with --ray" in refused(proc, "train")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["sft", "train"])
def test_overrides_after_an_option_are_overrides(tmp_path: Path, command: str) -> None:
    recipe = RECIPES / ("tiny_sft.yaml" if command == "sft" else "tiny_dapo.yaml")
    # the override reaches the recipe loader (which names the misspelt key), instead of "unrecognized arguments"
    proc = thinkrl(command, str(recipe), "--resume", "trainer.stepz=1", cwd=tmp_path)
    assert "unknown key 'stepz' in trainer" in refused(proc, command)
    other = thinkrl(command, str(recipe), "--resume", "--bogus", cwd=tmp_path)
    assert other.returncode == 2 and "unrecognized arguments: --bogus" in other.stderr
    assert not (tmp_path / "runs").exists()


def test_demo_checks_every_recipe_before_the_first_sft_run(tmp_path: Path) -> None:
    proc = thinkrl("demo", "--sft", str(RECIPES / "tiny_sft.yaml"), "--rl", str(RECIPES / "tiny_dapo.yaml"),
                   "--seeds", "0,1", "--rl-override", "rollout.group_size=0", cwd=tmp_path)
    assert "rollout.group_size: Input should be greater than or equal to 1 (got 0)" in refused(proc, "demo")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["demo", "ablate", "learn"])
def test_seeds_must_be_non_negative(tmp_path: Path, command: str) -> None:
    extra = [str(RECIPES / "ablations" / "dapo_grid.yaml")] if command == "ablate" else []
    proc = thinkrl(command, *extra, "--seeds", "0,-1", cwd=tmp_path)
    assert "--seeds must list distinct integers >= 0, got '0,-1'" in refused(proc, command)
    assert not (tmp_path / "runs").exists()


def test_learn_refuses_a_learning_rate_that_is_not_positive(tmp_path: Path) -> None:
    proc = thinkrl("learn", "--stage", "arm", "--arm", "rl", "--lr", "-1", cwd=tmp_path)
    assert "--lr must be a positive learning rate, got -1.0" in refused(proc, "learn")
    assert not (tmp_path / "runs").exists()


def test_grid_and_learning_config_errors_are_one_line(tmp_path: Path) -> None:
    bad_yaml, no_fields = tmp_path / "bad.yaml", tmp_path / "grid.yaml"
    bad_yaml.write_text("name: [\n")
    no_fields.write_text("name: g\nvariants: 3\n")
    line = refused(thinkrl("ablate", str(bad_yaml), cwd=tmp_path), "ablate")
    assert f"grid {bad_yaml} is not valid YAML: line 2, column 1" in line
    line = refused(thinkrl("ablate", str(no_fields), cwd=tmp_path), "ablate")
    assert f"invalid grid {no_fields}: sft: Field required; rl: Field required" in line
    assert "variants: Input should be a valid list" in line
    line = refused(thinkrl("learn", "--config", str(bad_yaml), "--stage", "report", cwd=tmp_path), "learn")
    assert f"learning config {bad_yaml} is not valid YAML" in line
    line = refused(thinkrl("learn", "--set", "cold.steps=-1", "--stage", "report", cwd=tmp_path), "learn")
    assert line.startswith("thinkrl learn: error: invalid learning config (defaults): cold.steps: Input should be "
                           "greater than or equal to 1")


def test_a_validation_error_escaping_its_loader_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import thinkrl.bench
    from thinkrl.cli import main

    class Settings(BaseModel):
        top_p: float = Field(gt=0, le=1)
        n: int

    def run(args: object) -> int:
        Settings.model_validate({"top_p": 0, "n": "x"})
        return 0

    monkeypatch.setattr(thinkrl.bench, "run", run)
    assert main(["bench", "anything"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "thinkrl bench: error: invalid Settings: top_p: Input should be greater than 0; n: Input should be a valid "
        "integer, unable to parse string as an integer (--traceback for details)"]


def test_an_unknown_benchmark_is_bad_input(tmp_path: Path) -> None:
    assert "unknown benchmark 'nosuch'; available: " in refused(thinkrl("bench", "nosuch", cwd=tmp_path), "bench")


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path: Path) -> None:
    # `thinkrl data arithmetic --n 3000 | head -1`: the pipe closes while the command still writes
    proc = subprocess.Popen([sys.executable, "-m", "thinkrl.cli", "data", "arithmetic", "--n", "3000"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("{")
    proc.stdout.close()
    assert proc.wait(timeout=300) == 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped
    assert proc.stderr.read() == ""


def test_a_rollout_longer_than_the_model_context_is_refused_before_allocating(model_dir: Path,
                                                                               tmp_path: Path) -> None:
    # 10^8 tokens a slot would be a KV cache of terabytes: refused against the model's 4096-token context
    proc = thinkrl("train", str(RECIPES / "tiny_dapo.yaml"), f"model.path={model_dir}",
                   "sampling.max_new_tokens=100000000", cwd=tmp_path)
    assert "beyond the model's context of 4096 tokens; lower sampling.max_new_tokens" in refused(proc, "train")
