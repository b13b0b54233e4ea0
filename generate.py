"""Sample text from a trained checkpoint: python generate.py ckpt=... prompt="ROMEO:"."""

import hydra
from omegaconf import DictConfig

from minigpt.cli import friendly_errors
from minigpt.generation import run


@hydra.main(config_path="conf", config_name="generate", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
