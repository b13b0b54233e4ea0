"""Typed configs: a wrong type, an unknown key or option is caught when the config is composed,
and reaches the user as one line naming the key (minigpt/configs.py, minigpt/cli.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import CONF, ROOT, compose_train
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf

from minigpt.architectures import build_model
from minigpt.cli import config_error
from minigpt.configs import GenerateSchema, GPTSchema
from minigpt.model import GPTConfig
from minigpt.sampling import SamplingConfig


def compose_error(config_name: str, *overrides: str) -> str:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)), pytest.raises(HydraException) as info:
        compose(config_name=config_name, overrides=list(overrides))
    return config_error(info.value)


@pytest.mark.parametrize("option", ["tiny", "mini", "small", "wide", "medium", "lstm"])
def test_every_model_option_is_typed_and_builds(option):
    cfg = compose_train(f"model={option}")
    assert OmegaConf.get_type(cfg.model).__name__ in ("GPTSchema", "LSTMSchema")
    model = build_model({**OmegaConf.to_container(cfg.model), "vocab_size": 11})
    assert sum(p.numel() for p in model.parameters()) > 0


def test_the_schemas_are_the_dataclasses_fields():
    """One declaration per field: the schema follows GPTConfig and SamplingConfig."""
    gpt = set(OmegaConf.structured(GPTSchema).keys())
    assert gpt == {f for f in GPTConfig.__dataclass_fields__ if f != "vocab_size"} | {"arch"}
    assert set(SamplingConfig.__dataclass_fields__) <= set(OmegaConf.structured(GenerateSchema).keys())


def test_a_wrong_type_stops_composition_with_the_key():
    assert compose_error("train", "model.n_layer=abc") == "model.n_layer must be an integer >= 1, got 'abc'"
    assert compose_error("generate", "ckpt=x", "seed=abc") == (
        "seed must be an integer from 0 to 4294967295 (or null), got 'abc'"
    )


def test_an_unknown_key_names_the_closest_one():
    assert compose_error("train", "model.n_layers=4").startswith(
        "model.n_layers is not a key of model; did you mean model.n_layer?"
    )
    assert "did you mean temperature?" in compose_error("generate", "ckpt=x", "tempreature=0.5")


def test_an_unknown_option_lists_the_options_without_the_schemas():
    line = compose_error("train", "model=huge")
    assert "model/huge" in line and "small, tiny" in line and "schema" not in line


def test_generate_options_are_typed():
    assert compose_error("generate", "ckpt=x", "top_k=2.5") == "top_k must be an integer >= 1 (or null), got 2.5"
    assert compose_error("generate", "ckpt=x", "use_cache=maybe") == "use_cache must be true or false, got 'maybe'"
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(config_name="generate", overrides=["ckpt=x", "temperature=0"])
    assert cfg.temperature == 0.0 and isinstance(cfg.temperature, float)


def test_the_command_line_gets_one_line_and_exit_code_2():
    result = subprocess.run(
        [sys.executable, "train.py", "model.n_embd=wide"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: model.n_embd must be an integer >= 1, got 'wide'"]


def test_a_sweep_with_cfg_is_one_line_saying_what_to_do_instead(monkeypatch, capsys):
    from minigpt.commands.train import main

    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "model.n_layer=1,2", "--cfg", "job"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: Only one of --run, --multirun") and "drop -m" in line


# --------------------------------------------------------------------------- every option against its schema

GROUPS = ("model", "optim", "scheduler", "data", "trainer", "callbacks", "task", "ablation", "experiment")
TARGET_GROUPS = ("trainer", "optim", "scheduler", "data")


def group_options() -> list[tuple[str, str]]:
    return [
        (group, str(path.relative_to(CONF / group).with_suffix("")))
        for group in GROUPS
        for path in sorted((CONF / group).rglob("*.yaml"))
    ]


def undeclared(cls: type, node: dict, prefix: str = "") -> list[str]:
    """Keys of `node` its schema `cls` does not declare (nested schemas followed)."""
    import dataclasses

    from minigpt.schema import declared

    fields, out = declared(cls), []
    for key, value in node.items():
        if key in ("_target_", "_partial_"):
            continue
        if key not in fields:
            out.append(f"{prefix}{key}")
        elif dataclasses.is_dataclass(fields[key][0]) and isinstance(value, dict):
            out += undeclared(fields[key][0], value, f"{prefix}{key}.")
    return out


@pytest.mark.slow  # ~80 compositions of 0.6 s: the default suite keeps its 3 minutes
@pytest.mark.parametrize(("group", "option"), group_options())
def test_every_group_option_composes_against_its_schema(group, option):
    """Each YAML of conf/<group>/ composes and passes `check_composed`, and each group node with a
    `_target_` has a schema that declares every key it sets."""
    from minigpt.configs import TARGET_OPTIONS, TASKS, TOOL_OPTIONS
    from minigpt.configs import compose as checked_compose

    cfg = OmegaConf.to_container(checked_compose("train", [f"{group}={option}"]), resolve=False)
    for name in TARGET_GROUPS:
        target = cfg[name]["_target_"]
        assert target in TARGET_OPTIONS, f"{name}: no schema for {target}"
        assert undeclared(TARGET_OPTIONS[target], cfg[name]) == [], f"{name} of {group}={option}"
    for name, node in (cfg.get("callbacks") or {}).items():
        assert node["_target_"] in TARGET_OPTIONS, f"callbacks.{name}: no schema for {node['_target_']}"
        assert undeclared(TARGET_OPTIONS[node["_target_"]], node) == [], f"callbacks.{name} of {group}={option}"
    assert undeclared(TASKS[cfg["task"]["name"]], cfg["task"]) == []
    top = {k: v for k, v in cfg.items() if k not in (*GROUPS, "model")}
    assert undeclared(TOOL_OPTIONS["train"], top) == []


TOOLS = sorted(p.stem for p in CONF.glob("*.yaml"))


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_config_composes_against_its_schema(tool):
    """Every tool of conf/*.yaml has a schema declaring every key of its config, and its config
    composes and passes `check_composed` as it ships."""
    from minigpt.configs import TOOL_OPTIONS
    from minigpt.configs import compose as checked_compose

    assert tool in TOOL_OPTIONS, f"conf/{tool}.yaml has no schema in minigpt/configs.py"
    cfg = OmegaConf.to_container(checked_compose(tool), resolve=False)
    if tool == "train":
        cfg = {k: v for k, v in cfg.items() if k not in GROUPS}
    assert undeclared(TOOL_OPTIONS[tool], cfg) == []


@pytest.mark.parametrize(
    ("tool", "override", "message"),
    [
        ("train", "trainer.max_steps=0", "trainer.max_steps must be an integer >= 1, got 0"),
        ("train", "optim=muon optim.ns_steps=0", "optim.ns_steps must be an integer >= 1, got 0"),
        (
            "train",
            "scheduler=wsd scheduler.decay_fraction=2",
            "scheduler.decay_fraction must be a number in [0, 1], got 2",
        ),
        ("train", "task=classify task.pooling=max", "task.pooling='max' is unknown; choose one of last, mean"),
        ("train", "task.name=foo", "task.name='foo' is unknown; choose one of lm, classify, caption; pick it with"),
        ("train", "data=repeats data.min_len=0", "data.min_len must be an integer >= 1, got 0"),
        ("evaluate", "ckpt=x generation.prompts=0", "generation.prompts must be an integer >= 1, got 0"),
        ("interpret", "ckpt=x max_chars=1", "max_chars must be an integer >= 2, got 1"),
        ("export", "ckpt=x format=tflite", "format='tflite' is unknown; choose one of exported, onnx"),
        ("caption", "ckpt=x n_examples=0", "n_examples must be an integer >= 1, got 0"),
        ("report", "dir=x log_y=2", "log_y must be true or false, got 2"),
        ("generate", "ckpt=x num_beams=0", "num_beams must be an integer >= 1, got 0"),
        ("generate", "ckpt=x threads=zero", "threads must be auto or an integer >= 1 (or null), got 'zero'"),
        ("evaluate", "ckpt=x threads=0", "threads must be auto or an integer >= 1 (or null), got 0"),
        (
            "train",
            "callbacks.symptoms.diverge_factor=0.5",
            "callbacks.symptoms.diverge_factor must be a number > 1, got 0.5",
        ),
        ("train", "callbacks.samples.max_new_tokens=abc", "callbacks.samples.max_new_tokens must be an integer >= 0"),
        ("train", "callbacks=ema callbacks.ema.decay=2", "callbacks.ema.decay must be a number in [0, 1], got 2"),
        ("train", "task=caption callbacks.captions.n_images=0", "callbacks.captions.n_images must be an integer >= 1"),
    ],
)
def test_a_value_outside_its_declaration_is_one_line_at_composition(tool, override, message):
    """The declared range or choices refuse a value when Python composes a config, as on the
    command line (`hydra_tool` runs the same `check_composed`)."""
    from minigpt.configs import compose as checked_compose
    from minigpt.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        checked_compose(tool, override.split())
    assert str(error.value).startswith(message)


# the pattern of a hand-written type test (`isinstance(v, bool) or not isinstance(v, int)`)
TYPE_TEST = r"isinstance\((?P<v>[\w.]+), bool\)\s*or\s*not\s+isinstance\((?P=v), \(?(int|float)"
# modules that check untrusted files (a checkpoint's contents, a sweep job's summary.json), whose
# values are data rather than options, and the one mechanism itself
NOT_CONFIG = ("minigpt/schema.py", "minigpt/checkpoint/", "minigpt/training/resume.py", "minigpt/analysis/report.py")


def test_no_hand_written_type_test_of_a_config_value_is_left():
    """Types of config values are declared once and checked by minigpt/schema.py: no module tests
    them by hand."""
    import re

    hits = []
    for path in sorted((ROOT / "minigpt").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name.startswith(NOT_CONFIG):
            continue
        text = path.read_text(encoding="utf-8")
        hits += [f"{name}:{text.count(chr(10), 0, m.start()) + 1}" for m in re.finditer(TYPE_TEST, text)]
    assert hits == []


@pytest.mark.parametrize("tool", TOOLS)
def test_each_tools_help_lists_its_own_options_from_its_schema(tool):
    """--help (`tool_help`): every option of the tool's schema with a default and what it takes,
    no group of another tool; train's fits one screen ahead of --cfg job."""
    from minigpt.configs import TOOL_OPTIONS, option_lines, tool_help

    text = tool_help(tool)
    listed = {line.split()[0] for line in text.splitlines() if line.startswith("  ") and len(line.split()) > 2}
    declared_keys = {line.split()[0] for line in option_lines(TOOL_OPTIONS[tool], {})}
    assert declared_keys <= listed
    assert "--cfg job" in text
    if tool == "train":
        assert len(text.splitlines()) <= 45 and "  optim " in text and "  seed " in text
    else:
        assert not {"optim", "scheduler", "ablation", "trainer"} & listed


def test_task_of_takes_the_task_names_tasks_declares():
    """train's `task_of` reads the names `TASKS` declares (`TaskChoice`), not a list of its own."""
    from minigpt.errors import ConfigError
    from minigpt.training.run import task_of

    assert task_of(OmegaConf.create({"task": {"name": "caption"}})) == "caption"
    assert task_of(OmegaConf.create({})) == "lm"
    with pytest.raises(ConfigError, match=r"^task\.name='foo' is unknown; choose one of lm, classify, caption"):
        task_of(OmegaConf.create({"task": {"name": "foo"}}))


def test_hydra_full_error_gives_the_traceback_of_a_schema_check(tmp_path):
    """One line and exit 2 by default; with HYDRA_FULL_ERROR=1 the traceback, for the checks of the
    `_target_` groups (minigpt/schema.py) as for the errors Hydra raises itself; either way before
    Hydra makes the run folder, so nothing is written."""
    from conftest import run_cli

    for key in ("trainer.max_steps=abc", "model.n_layer=abc"):
        quiet = run_cli(str(ROOT / "train.py"), key, cwd=tmp_path)
        assert quiet.returncode == 2 and "Traceback" not in quiet.stderr, quiet.stderr
        assert quiet.stderr.count("\n") == 1, quiet.stderr
        full = run_cli(str(ROOT / "train.py"), key, cwd=tmp_path, HYDRA_FULL_ERROR="1")
        assert full.returncode != 0 and "Traceback" in full.stderr, full.stderr
    assert not (tmp_path / "outputs").exists()
