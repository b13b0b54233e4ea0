"""python evaluate.py [key=value ...]: the same as python -m minigpt evaluate (minigpt/commands/evaluate.py)."""

from minigpt.__main__ import run_tool

if __name__ == "__main__":
    run_tool("evaluate")
