"""Train a model: python -m minigpt train [overrides] (or python train.py). Returns the best
validation loss, the value a Hydra sweeper minimises."""

import hydra
from omegaconf import DictConfig

from minigpt.cli import friendly_errors
from minigpt.commands import CONF_DIR
from minigpt.training.run import train


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> float:
    return train(cfg)["best_val_loss"]


if __name__ == "__main__":
    main()
