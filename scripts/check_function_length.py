"""Fail when a function in minigpt/ is longer than 60 lines (docstring included): a reader should
be able to hold each function in their head. Run by `make lint`; ruff checks the complexity."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LIMIT = 60


def long_functions(root: Path) -> list[str]:
    """`path:line name (N lines)` for every function or method under `root` longer than LIMIT."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - start + 1
                if lines > LIMIT:
                    found.append(f"{path}:{node.lineno} {node.name} ({lines} lines > {LIMIT})")
    return found


if __name__ == "__main__":
    roots = [Path(p) for p in sys.argv[1:]] or [Path(__file__).resolve().parents[1] / "minigpt"]
    problems = [line for root in roots for line in long_functions(root)]
    print("\n".join(problems) or f"every function is at most {LIMIT} lines")
    sys.exit(1 if problems else 0)
