"""Write the option reference of docs/configs.md from the config schemas (minigpt/configs.py):
every group option and tool, each option with its default, what it takes and its meaning.

    python scripts/config_reference.py          # rewrite the section in docs/configs.md
    python scripts/config_reference.py --check  # exit 1 when the section is not current
"""

from __future__ import annotations

import sys
from pathlib import Path

from minigpt.configs import config_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "configs.md"
START, END = "<!-- options:start (scripts/config_reference.py writes this) -->", "<!-- options:end -->"


def with_reference(text: str) -> str:
    """`text` (docs/configs.md) with its reference section replaced by the schemas' tables."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n\n{config_reference()}\n{END}{tail}"


def main() -> int:
    text = DOC.read_text(encoding="utf-8")
    new = with_reference(text)
    if "--check" in sys.argv[1:]:
        if new != text:
            print("docs/configs.md's option reference is not current: run python scripts/config_reference.py")
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
