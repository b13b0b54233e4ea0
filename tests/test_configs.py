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
    assert compose_error("train", "model.n_layer=abc") == "model.n_layer must be an integer, got 'abc'"
    assert compose_error("generate", "ckpt=x", "seed=abc") == "seed must be an integer (or null), got 'abc'"


def test_an_unknown_key_names_the_closest_one():
    assert compose_error("train", "model.n_layers=4").startswith(
        "model.n_layers is not a key of model; did you mean model.n_layer?"
    )
    assert "did you mean temperature?" in compose_error("generate", "ckpt=x", "tempreature=0.5")


def test_an_unknown_option_lists_the_options_without_the_schemas():
    line = compose_error("train", "model=huge")
    assert "model/huge" in line and "small, tiny" in line and "schema" not in line


def test_generate_options_are_typed():
    assert compose_error("generate", "ckpt=x", "top_k=2.5") == "top_k must be an integer (or null), got 2.5"
    assert compose_error("generate", "ckpt=x", "use_cache=maybe") == "use_cache must be true or false, got 'maybe'"
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(config_name="generate", overrides=["ckpt=x", "temperature=0"])
    assert cfg.temperature == 0.0 and isinstance(cfg.temperature, float)


def test_the_command_line_gets_one_line_and_exit_code_2():
    result = subprocess.run(
        [sys.executable, "train.py", "model.n_embd=wide"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: model.n_embd must be an integer, got 'wide'"]


def test_a_sweep_with_cfg_is_one_line_saying_what_to_do_instead(monkeypatch, capsys):
    from minigpt.commands.train import main

    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "model.n_layer=1,2", "--cfg", "job"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: Only one of --run, --multirun") and "drop -m" in line
