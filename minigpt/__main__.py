"""python -m minigpt <tool> [key=value ...]: run one of the tools in minigpt/commands/."""

import importlib
import sys

from minigpt.commands import TOOLS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
        given = f"unknown tool {sys.argv[1]!r}; " if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
        print(
            f"error: {given}usage: python -m minigpt <tool> [key=value ...] with <tool> one of "
            f"{', '.join(TOOLS)}; add --help after a tool for its options",
            file=sys.stderr,
        )
        sys.exit(2)
    tool = sys.argv.pop(1)
    sys.argv[0] = f"minigpt-{tool}"
    importlib.import_module(f"minigpt.commands.{tool}").main()


if __name__ == "__main__":
    main()
