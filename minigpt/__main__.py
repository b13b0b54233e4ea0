"""python -m minigpt <tool> [key=value ...]: run one of the tools in minigpt/commands/."""

import importlib
import sys


def run_tool(tool: str) -> None:
    """Import the tool and run its `main()`. A Ctrl-C while the libraries load (seconds: torch,
    Lightning, Hydra) is one line and exit code 130, as at any later moment (minigpt/cli.py)."""
    try:
        module = importlib.import_module(f"minigpt.commands.{tool}")
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    module.main()


def main() -> None:
    try:
        from minigpt.commands import TOOLS
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
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
    run_tool(tool)


if __name__ == "__main__":
    main()
