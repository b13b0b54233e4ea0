"""Label a text with a trained classifier: python -m minigpt classify ckpt=... text="..."."""

import hydra
from omegaconf import DictConfig

from minigpt.cli import friendly_errors
from minigpt.commands import CONF_DIR
from minigpt.training.classifier import run


@hydra.main(config_path=CONF_DIR, config_name="classify", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
