"""mkdocs hook (mkdocs.yml `hooks:`): the site shows Python code by its name, from the file itself.

A line of a page

    --8<-- "minigpt/model.py:CausalSelfAttention.forward"

becomes the source of that class, function, method or module-level assignment, with its
decorators and docstring, as it stands in the file, indented like the line. So the code a page
shows is the code that runs, and the source files carry no include markers for the reader to step
over. A name the file does not define fails the build (`make docs`) naming the page and the name.
Includes of other files (`--8<-- "conf/ablation/no_scale.yaml"`) are left to pymdownx.snippets.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = re.compile(r'^(?P<indent>[ \t]*)--8<-- "(?P<path>[^":\s]+\.py):(?P<name>[A-Za-z_][\w.]*)"[ \t]*$', re.M)


def definitions(tree: ast.Module) -> dict[str, list[ast.stmt]]:
    """Qualified name -> the nodes that define it: classes, functions, methods (a property's getter and
    setter are two), module-level assignments."""
    found: dict[str, list[ast.stmt]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.setdefault(prefix + node.name, []).append(node)
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and not prefix:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        found.setdefault(target.id, []).append(node)

    visit(tree.body, "")
    return found


def source_of(path: str, name: str) -> str:
    """The source of `name` in the file `path` (inside the project), dedented."""
    file = (ROOT / path).resolve()
    if not file.is_relative_to(ROOT):
        raise LookupError(f"{path} is outside the project")
    text = file.read_text(encoding="utf-8")
    nodes = definitions(ast.parse(text, filename=path)).get(name, [])
    if len(nodes) != 1:
        raise LookupError(f"{path} defines no {name!r}" if not nodes else f"{path} defines {name!r} {len(nodes)} times")
    node = nodes[0]
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    lines = text.split("\n")  # the lines ast counts (splitlines() would also split at \f or U+2028)
    return textwrap.dedent("\n".join(lines[first - 1 : node.end_lineno]))


def include_source(markdown: str, where: str) -> str:
    """`markdown` with every Python include line replaced by the code it names."""

    def code(match: re.Match) -> str:
        try:
            source = source_of(match["path"], match["name"])
        except (OSError, UnicodeDecodeError, SyntaxError, LookupError) as error:
            from mkdocs.exceptions import PluginError

            raise PluginError(f"{where}: {error}") from None
        return textwrap.indent(source, match["indent"], lambda line: True)

    return INCLUDE.sub(code, markdown)


def on_page_markdown(markdown: str, page, **kwargs) -> str:  # noqa: ARG001 (mkdocs' hook signature)
    return include_source(markdown, page.file.src_uri)
