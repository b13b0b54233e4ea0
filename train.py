"""Train a minigpt model: python train.py [overrides]. See conf/train.yaml and the README."""

import hydra
from omegaconf import DictConfig

from minigpt.cli import friendly_errors
from minigpt.training import train


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> float:
    """Returns the best validation loss, the value a Hydra sweeper minimises."""
    return train(cfg)["best_val_loss"]


if __name__ == "__main__":
    main()
