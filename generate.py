"""python generate.py [key=value ...]: the same as python -m minigpt generate (minigpt/commands/generate.py)."""

from minigpt.__main__ import run_tool

if __name__ == "__main__":
    run_tool("generate")
