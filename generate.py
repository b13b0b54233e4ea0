"""python generate.py [key=value ...]: the same as python -m minigpt generate (minigpt/commands/generate.py)."""

from minigpt.commands.generate import main

if __name__ == "__main__":
    main()
