"""Use a trained vision-language model: python -m minigpt caption ckpt=... [image=digit.png]."""

from omegaconf import DictConfig

from minigpt.cli import hydra_tool
from minigpt.commands import CONF_DIR


@hydra_tool(CONF_DIR, "caption")
def main(cfg: DictConfig) -> None:
    from minigpt.inference.caption import run

    run(cfg)


if __name__ == "__main__":
    main()
