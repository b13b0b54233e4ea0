"""Sample text from a checkpoint: python -m minigpt generate ckpt=... prompt="ROMEO:"."""

from omegaconf import DictConfig

from minigpt.cli import hydra_tool
from minigpt.commands import CONF_DIR


@hydra_tool(CONF_DIR, "generate")
def main(cfg: DictConfig) -> None:
    from minigpt.inference.generation import run

    run(cfg)


if __name__ == "__main__":
    main()
