"""Evaluate a checkpoint: python -m minigpt evaluate ckpt=... [data.path=...]."""

import hydra
from omegaconf import DictConfig

from minigpt.analysis.evaluate import run
from minigpt.cli import friendly_errors
from minigpt.commands import CONF_DIR


@hydra.main(config_path=CONF_DIR, config_name="evaluate", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
