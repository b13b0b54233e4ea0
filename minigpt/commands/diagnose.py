"""Figures of what a model does with a text: python -m minigpt diagnose ckpt=... text="..."."""

import hydra
from omegaconf import DictConfig

from minigpt.analysis.diagnose import run
from minigpt.cli import friendly_errors
from minigpt.commands import CONF_DIR


@hydra.main(config_path=CONF_DIR, config_name="diagnose", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
