"""python evaluate.py [key=value ...]: the same as python -m minigpt evaluate (minigpt/commands/evaluate.py)."""

from minigpt.commands.evaluate import main

if __name__ == "__main__":
    main()
