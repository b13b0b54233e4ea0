"""python train.py [key=value ...]: the same as python -m minigpt train (minigpt/commands/train.py)."""

from minigpt.commands.train import main

if __name__ == "__main__":
    main()
