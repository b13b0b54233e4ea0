"""What each attention head does: python -m minigpt interpret ckpt=... text="..."."""

from omegaconf import DictConfig

from minigpt.cli import hydra_tool
from minigpt.commands import CONF_DIR


@hydra_tool(CONF_DIR, "interpret")
def main(cfg: DictConfig) -> None:
    from minigpt.analysis.interpret import run

    run(cfg)


if __name__ == "__main__":
    main()
