"""Figures of what a model does with a text: python -m minigpt diagnose ckpt=... text="..."."""

from omegaconf import DictConfig

from minigpt.cli import hydra_tool
from minigpt.commands import CONF_DIR


@hydra_tool(CONF_DIR, "diagnose")
def main(cfg: DictConfig) -> None:
    from minigpt.analysis.diagnose import run

    run(cfg)


if __name__ == "__main__":
    main()
