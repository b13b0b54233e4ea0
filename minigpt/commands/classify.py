"""Label a text with a trained classifier: python -m minigpt classify ckpt=... text="..."."""

from omegaconf import DictConfig

from minigpt.cli import hydra_tool
from minigpt.commands import CONF_DIR


@hydra_tool(CONF_DIR, "classify")
def main(cfg: DictConfig) -> None:
    from minigpt.inference.classify import run

    run(cfg)


if __name__ == "__main__":
    main()
