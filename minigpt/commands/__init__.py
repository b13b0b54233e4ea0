"""The tools, one convention: each module here is a `main()` that composes its config with Hydra
(`conf/<tool>.yaml`), turns user errors into one line (`friendly_errors`) and calls one library
function. Nothing imports these modules; they import the library, inside `main`, so that `--help`
and a config that does not compose answer without loading Lightning.

    python -m minigpt <tool> [key=value ...]      # any tool, from any working directory
    python train.py / generate.py / evaluate.py   # the same mains, at the repository root
"""

from __future__ import annotations

from minigpt.configs import CONF_DIR  # conf/ beside the package: found from any directory

__all__ = ["CONF_DIR", "TOOLS"]
TOOLS = ("train", "generate", "evaluate", "diagnose", "interpret", "export", "classify", "caption", "report")
