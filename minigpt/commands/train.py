"""Train a model: python -m minigpt train [overrides] (or python train.py). Returns the best
validation loss, the value a Hydra sweeper minimises."""

from omegaconf import DictConfig

from minigpt.cli import hydra_tool
from minigpt.commands import CONF_DIR


@hydra_tool(CONF_DIR, "train")
def main(cfg: DictConfig) -> float:
    from minigpt.training.run import train

    return train(cfg)["best_val_loss"]


if __name__ == "__main__":
    main()
