"""Bad input at the command line is one line on stderr naming what is wrong, exit status 2, no traceback, and nothing
written: paths of the wrong kind, devices this machine lacks, damaged weights, unknown tasks in a JSONL file,
non-finite recipe numbers, bad flags of serve, tune, eval, train, demo, ablate, learn and bench."""

from __future__ import annotations

import shutil
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


# ---- a hostile-user pass: damaged config.json values, refused runs that wrote files, text files of the wrong kind


@pytest.mark.parametrize(("key", "value", "message"), [
    ("hidden_size", "abc", "hidden_size must be int, got 'abc'"),
    ("num_key_value_heads", 0, "num_key_value_heads must be positive, got 0"),  # was a ZeroDivisionError
    ("rms_norm_eps", "x", "rms_norm_eps must be float, got 'x'"),
    ("rope_parameters", [1], "rope_parameters must be a mapping or null, got [1]"),
    ("rope_scaling", {"rope_type": "linear"}, "rope_scaling of type 'linear' needs the numbers factor"),
])
def test_a_config_json_value_of_the_wrong_kind_is_named(model_dir: Path, tmp_path: Path, key: str, value: object,
                                                        message: str) -> None:
    import json

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    config = json.loads((model_dir / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: value}))
    line = refused(thinkrl("generate", "--model", str(folder), "--prompt", "hi", cwd=tmp_path), "generate")
    assert f"{folder / 'config.json'}: {message}" in line


def test_a_config_json_that_is_not_text_or_a_model_file_path_is_named(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(b"\xff\xfe")
    line = refused(thinkrl("generate", "--model", str(tmp_path), "--prompt", "hi", cwd=tmp_path), "generate")
    assert f"{tmp_path / 'config.json'} is not UTF-8 text" in line
    line = refused(thinkrl("generate", "--model", str(model_dir / "config.json"), "--prompt", "hi", cwd=tmp_path),
                   "generate")
    assert f"model {model_dir / 'config.json'} is a file; give the folder" in line


@pytest.mark.parametrize(("override", "message"), [
    ("model.init.num_key_value_heads=0", "model.init: num_key_value_heads must be positive, got 0"),
    ("model.init.vocab_size=abc", "model.init: vocab_size must be int, got 'abc'"),
    ("model.init.architectures=7", "model.init: architectures must be a list of architecture names, got 7"),
    ("trainer.steps=1", "optim.warmup_steps (20) must be <= trainer.steps (1)"),
])
def test_a_recipe_the_run_cannot_build_is_refused_before_any_folder(tmp_path: Path, override: str,
                                                                    message: str) -> None:
    line = refused(thinkrl("sft", str(RECIPES / "tiny_sft.yaml"), override, cwd=tmp_path), "sft")
    assert f"invalid recipe {RECIPES / 'tiny_sft.yaml'}: " in line and message in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["sft", "train"])
def test_a_refused_run_keeps_the_recipe_of_the_run_before(model_dir: Path, tmp_path: Path, command: str) -> None:
    # the data file is read after the model is built: the run folder, and an earlier run's recipe.yaml in it, stay
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "recipe.yaml").write_text("name: earlier\n")
    recipe = RECIPES / ("tiny_sft.yaml" if command == "sft" else "tiny_dapo.yaml")
    model = [] if command == "sft" else [f"model.path={model_dir}"]
    missing = tmp_path / "missing.jsonl"
    for folder in (out, tmp_path / "fresh"):
        proc = thinkrl(command, str(recipe), *model, f"data.train_file={missing}", f"trainer.output_dir={folder}",
                       cwd=tmp_path)
        assert str(missing) in refused(proc, command)
    assert (out / "recipe.yaml").read_text() == "name: earlier\n"
    assert not (tmp_path / "fresh").exists()


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-step SFT run of a tiny model, with a checkpoint each step."""
    folder = tmp_path_factory.mktemp("sft-run")
    recipe = folder / "sft.yaml"
    recipe.write_text("name: s\nmodel:\n  init: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, "
                      "num_attention_heads: 2, num_key_value_heads: 1}\n  device: cpu\n"
                      "data: {task: arithmetic, num_train: 16, num_test: 4}\n"
                      f"trainer: {{steps: 2, micro_batch_tokens: 1024, save_every: 1, output_dir: {folder / 'run'}}}\n")
    proc = thinkrl("sft", str(recipe), cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def test_export_to_a_file_leaves_the_file(sft_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "config.json"  # e.g. `thinkrl export CKPT model/config.json` for `model/`
    target.write_text("{}")
    proc = thinkrl("export", str(sft_run / "run" / "checkpoints"), str(target), cwd=tmp_path)
    assert f"{target} is a file, not a folder: not replacing it" in refused(proc, "export")
    assert target.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc and /sys")
@pytest.mark.parametrize("out", ["/proc/x", "/sys/x"])  # folders where nobody, root included, creates an entry
def test_export_where_no_folder_can_be_made_names_the_destination(sft_run: Path, tmp_path: Path, out: str) -> None:
    proc = thinkrl("export", str(sft_run / "run" / "checkpoints"), out, cwd=tmp_path)
    line = refused(proc, "export")
    assert f"cannot write {out}: cannot create a folder in {Path(out).parent}" in line
    assert ".tmp" not in line  # not the temporary folder the export writes first


@pytest.mark.parametrize(("damage", "message"), [
    ("latest", "checkpoints/latest is corrupted: not text naming a step-XXXXXXXX folder"),
    ("trainer_state.json", "checkpoints/step-00000002/trainer_state.json is missing"),
])
def test_resume_from_a_damaged_checkpoint_names_the_file(sft_run: Path, tmp_path: Path, damage: str,
                                                         message: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(sft_run / "run", run)
    recipe_before = (run / "recipe.yaml").read_text()
    if damage == "latest":
        (run / "checkpoints" / "latest").write_bytes(b"\xff\n")
    else:
        (run / "checkpoints" / "step-00000002" / "trainer_state.json").unlink()
    proc = thinkrl("sft", str(sft_run / "sft.yaml"), f"trainer.output_dir={run}", "trainer.steps=4", "epochs=2",
                   "--resume", cwd=tmp_path)
    assert message in refused(proc, "sft")
    assert (run / "recipe.yaml").read_text() == recipe_before


def test_a_fresh_run_into_a_folder_with_checkpoints_is_refused_and_they_stay(sft_run: Path, tmp_path: Path) -> None:
    # before: the fresh run overwrote the earlier run's step folders of the same numbers, repointed `latest` and
    # pruned the rest (keep_last), without a word
    run = tmp_path / "run"
    shutil.copytree(sft_run / "run", run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proc = thinkrl("sft", str(sft_run / "sft.yaml"), f"trainer.output_dir={run}", cwd=tmp_path)
    assert (f"{run / 'checkpoints'} holds an earlier run's checkpoints: pass --resume to continue that run"
            in refused(proc, "sft"))
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("kind", ["folder", "not utf-8"])
@pytest.mark.parametrize(("command", "what"), [
    (["sft", "{}"], "recipe file"),
    (["ablate", "{}"], "grid file"),
    (["learn", "--config", "{}", "--stage", "report"], "learning config"),
    (["train", str(RECIPES / "tiny_dapo.yaml"), "--layout", "{}"], "layout file"),
])
def test_a_yaml_file_of_the_wrong_kind_is_named(tmp_path: Path, kind: str, command: list[str], what: str) -> None:
    path = tmp_path / "given.yaml"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"name: x\n\xff\n")
    line = refused(thinkrl(*[str(path) if word == "{}" else word for word in command], cwd=tmp_path), command[0])
    expected = "is a folder, not a file" if kind == "folder" else "is not UTF-8 text"
    assert f"{what} {path} {expected}" in line


def test_eval_names_bad_budgets_and_a_folder_given_as_data(model_dir: Path, tmp_path: Path) -> None:
    proc = thinkrl("eval", "--model", str(model_dir), "--task", "arithmetic", "--n", "2", "--budgets", "0,x",
                   cwd=tmp_path)
    assert "--budgets must be comma-separated integers (-1 unlimited, 0, or a token count), got '0,x'" in refused(
        proc, "eval")
    proc = thinkrl("eval", "--model", str(model_dir), "--data", str(tmp_path), cwd=tmp_path)
    assert f"benchmark file {tmp_path} is a folder, not a file" in refused(proc, "eval")


def test_ablate_refuses_two_grids_of_one_name(tmp_path: Path) -> None:
    grid = RECIPES / "ablations" / "dapo_grid.yaml"
    proc = thinkrl("ablate", str(grid), str(grid), "--seeds", "0", cwd=tmp_path)
    assert "grid names must be distinct (each names its results folder); given twice: dapo" in refused(proc, "ablate")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../outside", "", ".", "a/b"])
@pytest.mark.parametrize("command", ["demo", "ablate", "learn"])
def test_a_run_name_that_is_not_one_folder_under_runs_is_refused(tmp_path: Path, command: str, name: str) -> None:
    # runs/<name> was joined as given: "../outside" wrote beside runs/, "" and "." into runs/ itself
    work = tmp_path / "work"
    work.mkdir()
    inputs = {"demo": [], "ablate": [str(RECIPES / "ablations" / "dapo_grid.yaml")], "learn": []}[command]
    proc = thinkrl(command, *inputs, "--name", name, cwd=work)
    assert f"--name must name one folder under runs/ (no '/', not '.' or '..'), got {name!r}" in refused(proc, command)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["work"]


def test_sft_names_the_problem_whose_ground_truth_it_cannot_trace(tmp_path: Path) -> None:
    # before: "ground truth has no 'expression' field: {}", naming neither the problem nor the data
    data = tmp_path / "train.jsonl"
    data.write_text('{"task": "arithmetic", "id": "p7", "prompt": "2+3", "ground_truth": {}, "difficulty": {}}\n')
    proc = thinkrl("sft", str(RECIPES / "tiny_sft.yaml"), f"data.train_file={data}",
                   f"trainer.output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert "data: problem 'p7' of task 'arithmetic': ground truth has no 'expression' field" in refused(proc, "sft")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["sft", "train"])
def test_an_empty_data_file_is_named(model_dir: Path, tmp_path: Path, command: str) -> None:
    # before: "no training problems" (train) or a run over nothing, naming no file
    data = tmp_path / "empty.jsonl"
    data.write_text("\n")
    recipe = RECIPES / ("tiny_sft.yaml" if command == "sft" else "tiny_dapo.yaml")
    model = [] if command == "sft" else [f"model.path={model_dir}"]
    proc = thinkrl(command, str(recipe), *model, f"data.train_file={data}", f"trainer.output_dir={tmp_path / 'run'}",
                   cwd=tmp_path)
    assert f"data.train_file {data} holds no problems" in refused(proc, command)


def test_learn_report_without_results_says_which_stage_to_run(tmp_path: Path) -> None:
    # before: a raw "[Errno 2] No such file or directory: 'runs/s/seed-0/test/cold.json'", after creating --docs
    shutil.copytree(RECIPES, tmp_path / "recipes")
    proc = thinkrl("learn", "--config", "recipes/learning/search.yaml", "--name", "s", "--stage", "report",
                   "--seeds", "0", "--docs", str(tmp_path / "docs"), cwd=tmp_path)
    assert ("no test result runs/s/seed-0/test/cold.json (4 missing): run the protocol's final stage for these seeds "
            "first" in refused(proc, "learn"))
    assert not (tmp_path / "docs").exists()
