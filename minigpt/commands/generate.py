"""Sample text from a checkpoint: python -m minigpt generate ckpt=... prompt="ROMEO:"."""

import hydra
from omegaconf import DictConfig

from minigpt.cli import friendly_errors
from minigpt.commands import CONF_DIR
from minigpt.inference.generation import run


@hydra.main(config_path=CONF_DIR, config_name="generate", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
