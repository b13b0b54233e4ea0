"""The tools, one convention: each module here is a `main()` that composes its config with Hydra
(`conf/<tool>.yaml`), turns user errors into one line (`friendly_errors`) and calls one library
function. Nothing imports these modules; they import the library.

    python -m minigpt <tool> [key=value ...]      # any tool, from any working directory
    python train.py / generate.py / evaluate.py   # the same mains, at the repository root
"""

from __future__ import annotations

from pathlib import Path

# conf/ sits beside the package in the repository, so every tool finds it from any directory
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
TOOLS = ("train", "generate", "evaluate", "diagnose", "export", "classify", "report")
