"""Evaluate a checkpoint: python evaluate.py ckpt=... [data.path=...]. See conf/evaluate.yaml."""

import hydra
from omegaconf import DictConfig

from minigpt.cli import friendly_errors
from minigpt.evaluate import run


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
