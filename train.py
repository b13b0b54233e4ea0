"""python train.py [key=value ...]: the same as python -m minigpt train (minigpt/commands/train.py)."""

from minigpt.__main__ import run_tool

if __name__ == "__main__":
    run_tool("train")
