"""Evaluate a checkpoint: python -m minigpt evaluate ckpt=... [data.path=...]."""

from omegaconf import DictConfig

from minigpt.cli import hydra_tool
from minigpt.commands import CONF_DIR


@hydra_tool(CONF_DIR, "evaluate")
def main(cfg: DictConfig) -> None:
    from minigpt.analysis.metrics import run

    run(cfg)


if __name__ == "__main__":
    main()
