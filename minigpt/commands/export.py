"""Export a checkpoint for deployment: python -m minigpt export ckpt=... format=exported|onnx."""

from omegaconf import DictConfig

from minigpt.cli import hydra_tool
from minigpt.commands import CONF_DIR


@hydra_tool(CONF_DIR, "export")
def main(cfg: DictConfig) -> None:
    from minigpt.inference.export import run

    run(cfg)


if __name__ == "__main__":
    main()
