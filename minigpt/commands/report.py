"""Summarise a sweep: python -m minigpt report dir=outputs/<task>/multiruns/<time>."""

from omegaconf import DictConfig

from minigpt.cli import hydra_tool
from minigpt.commands import CONF_DIR


@hydra_tool(CONF_DIR, "report")
def main(cfg: DictConfig) -> None:
    from minigpt.analysis.report import run

    run(cfg)


if __name__ == "__main__":
    main()
