"""The docs cannot drift from the code: what README.md, CONTRIBUTING.md, docs/*.md, the notebooks'
markdown and the comments of conf/ name must exist.

Checked in every text: file paths (`minigpt/model.py`, `conf/model/tiny.yaml`, `notebooks/01_*`),
config groups and options (`model=small`, `hydra/launcher=slurm`), config keys
(`optim.lr=3e-3`, `trainer.max_time`, `~callbacks.ema`, `top_p=0.9` in a command), tools
(`python -m minigpt interpret`), make targets (`make test-slow`), tests
(`tests/test_model.py::test_causal`, `tests/test_model.py -k rope`), names said to live in a file
(`hydra_tool` in `minigpt/cli.py`, `GPT.attention_bias`) and README sections a comment points to.
Checked once: every module of minigpt/ has its `::: module` on the API page, every option of every
config group and every tool's config is in the tree of docs/configs.md, every tool is run somewhere
in the docs, and the pages that enumerate a tuple of the code (the head scores, the position
encodings) name all of it. The learning path: the home page links every page, and every page ends
with a "Where next" list.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from pathlib import Path

import pytest
from conftest import load_script
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DOCS = ROOT / "docs"
# the folders of the repository a path in the docs may start with (outputs/, data/ are made by runs)
ROOTS = ("minigpt", "conf", "tests", "scripts", "docs", "notebooks", "benchmarks", ".ci")
# a bare file name in code (`lstm.py`) is a source file somewhere in the repository; other names
# (`summary.json`, `samples.md`) are mostly what a run writes, so they are not checked
SOURCE_EXTENSIONS = ("py", "yaml", "toml", "ipynb")
# what a code span that looks like a config key ends with when it is a file name (`model.safetensors`)
FILE_SUFFIX = re.compile(r"\.(?:py|yaml|md|json|txt|png|ckpt|tsv|csv|html|safetensors|onnx|pt2|pt|bin|log)$")
# names the docs show on purpose as what does not exist: the inputs of their error examples
SHOWN_AS_ERRORS = {"config model=huge: no conf/model/huge.yaml"}


# ------------------------------------------------------------------ the texts


def notebook_markdown(path: Path) -> str:
    """The markdown cells of a notebook: an .ipynb's, or a Jupytext percent file's `# %% [markdown]`
    cells with their comment marks taken off."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    out, in_markdown = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            in_markdown = "[markdown]" in line
        elif in_markdown:
            out.append(re.sub(r"^# ?", "", line))
    return "\n".join(out)


def conf_comments(path: Path) -> str:
    """The comment lines of a YAML file of conf/, where options and commands are explained."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line.split("#", 1)[1] for line in lines if line.lstrip().startswith("#"))


@functools.cache
def doc_texts() -> dict[str, str]:
    """Every text a reader follows, by its path in the repository."""
    paths = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md"))]
    texts = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in paths}
    notebooks = ROOT / "notebooks"
    for path in sorted([*notebooks.glob("*.ipynb"), *notebooks.glob("*.py"), notebooks / "README.md"]):
        if path.is_file():
            texts[str(path.relative_to(ROOT))] = (
                path.read_text(encoding="utf-8") if path.suffix == ".md" else notebook_markdown(path)
            )
    for path in sorted(CONF.rglob("*.yaml")):
        texts[str(path.relative_to(ROOT))] = conf_comments(path)
    return texts


def code_of(text: str) -> list[str]:
    """The code a text shows: each inline `code span` and each line of a fenced block."""
    blocks = re.findall(r"^\s*```[^\n]*\n(.*?)^\s*```", text, flags=re.S | re.M)
    prose = re.sub(r"^\s*```[^\n]*\n.*?^\s*```", "", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", prose)
    return spans + [line for block in blocks for line in block.splitlines()]


# ------------------------------------------------------------------ what exists


@functools.cache
def repo_files() -> frozenset[str]:
    """The files and folders of the repository, relative to its root (run outputs left out)."""
    found = set()
    for top in ROOTS:
        for path in (ROOT / top).rglob("*"):
            if "__pycache__" not in path.parts and ".ipynb_checkpoints" not in path.parts:
                found.add(str(path.relative_to(ROOT)))
    found |= {p.name for p in ROOT.iterdir()}
    return frozenset(found)


def flat_keys(node: object, prefix: str) -> set[str]:
    """Every dotted key of a config node, the inner ones included (`hydra`, `hydra.run`, `hydra.run.dir`)."""
    keys = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "defaults":
                continue
            name = f"{prefix}{key}"
            keys |= {name} | flat_keys(value, name + ".")
    return keys


@functools.cache
def config_keys() -> frozenset[str]:
    """Every key a config of conf/ can hold: the tools' own files, each group's files under the
    group's package (`_global_` at the root), the schemas' fields and Hydra's own settings."""
    from hydra.conf import HydraConf

    keys = {"model.arch"}
    for path in CONF.rglob("*.yaml"):
        group = path.parent.relative_to(CONF).as_posix()
        text = path.read_text(encoding="utf-8")
        package = "" if group == "." or "@package _global_" in text else group.replace("/", ".") + "."
        keys |= flat_keys(OmegaConf.to_container(OmegaConf.load(path)), package)
    # the schemas of minigpt/configs.py: the fields of the model configs and of generate's options
    for cls, prefix in (
        ("GPTConfig", "model."),
        ("LSTMConfig", "model."),
        ("GenerateOptions", ""),
        ("SamplingConfig", ""),
    ):
        keys |= {prefix + name for name in class_fields(cls)}
    keys |= flat_keys(OmegaConf.to_container(OmegaConf.structured(HydraConf)), "hydra.")
    return frozenset(keys)


@functools.cache
def config_groups() -> dict[str, frozenset[str]]:
    """Each config group of conf/ (`model`, `hydra/launcher`) with its options (file names)."""
    groups = {}
    for path in CONF.rglob("*.yaml"):
        if path.parent != CONF:
            parts = path.relative_to(CONF).with_suffix("").parts
            # a folder inside a group holds more of its options: experiment=debug/lr_high
            top = 1 if any((CONF / parts[0]).glob("*.yaml")) else len(parts) - 1
            group, option = "/".join(parts[:top]), "/".join(parts[top:])
            groups[group] = groups.get(group, frozenset()) | {option}
    return groups


@functools.cache
def make_targets() -> frozenset[str]:
    return frozenset(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


def tools() -> tuple[str, ...]:
    return constant("TOOLS")


def class_node(cls: str) -> ast.ClassDef:
    tree = ast.parse((ROOT / classes()[cls]).read_text(encoding="utf-8"))
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)


def class_fields(cls: str) -> list[str]:
    """The fields of a dataclass of minigpt/ (its annotated class attributes), read from the source."""
    body = class_node(cls).body
    return [n.target.id for n in body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]


@functools.cache
def constant(name: str) -> tuple:
    """A tuple constant of minigpt/ (`TOOLS`, `HEAD_SCORES`), read from the source: the test stays
    fast because it imports neither torch nor Lightning."""
    for path in sorted((ROOT / "minigpt").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return tuple(ast.literal_eval(node.value))
    raise LookupError(f"no constant {name} in minigpt/")


@functools.cache
def defined_names(path: str) -> dict[str, frozenset[str]]:
    """The names a Python file defines at its top level, each with the names its body defines
    (a class's methods and fields; empty for the rest)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names: dict[str, frozenset[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body if isinstance(node, ast.ClassDef) else []
            names[node.name] = frozenset(n for child in body for n in assigned(child))
        else:
            names.update(dict.fromkeys(assigned(node), frozenset()))
    return names


def assigned(node: ast.stmt) -> list[str]:
    """The names a statement binds: a def or class, an assignment, an import."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    return []


@functools.cache
def classes() -> dict[str, str]:
    """Each class defined in minigpt/ by its name, with the file that defines it."""
    found = {}
    for path in sorted((ROOT / "minigpt").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                found[node.name] = rel
    return found


# ------------------------------------------------------------------ the checks, one per kind of mention

# a path ends where no path character or placeholder (`tests/test_<name>.py`) follows
PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(re.escape(r) for r in ROOTS)})/[\w.*/-]*[\w*])(?![\w*/<-]|\.\w)")
BARE_FILE = re.compile(rf"(?<![\w./<-])([\w-]+\.(?:{'|'.join(SOURCE_EXTENSIONS)}))(?![\w/-])")


def path_problems(text: str) -> list[str]:
    """Paths rooted in the repository's folders, and bare file names, that name no file."""
    problems = []
    for path in PATH.findall(text):
        pattern = re.escape(path).replace(r"\*", "[^/]*")
        exists = path in repo_files() or ("*" in path and any(re.fullmatch(pattern, f) for f in repo_files()))
        if not exists:
            problems.append(f"path {path} does not exist")
    for code in code_of(text):
        for name in BARE_FILE.findall(code):
            if not any(f == name or f.endswith("/" + name) for f in repo_files()):
                problems.append(f"file {name} is nowhere in the repository")
    return problems


OVERRIDE = re.compile(r"^([+~]{0,2})([A-Za-z_][\w./]*)(?:=(.*))?$")
COMMAND = re.compile(r"(?:python3?\s+(?:-m\s+minigpt\s+\w+|\w+\.py)|make\s+\w+)\s+(.*)")


def override_problem(token: str, in_command: bool) -> str | None:
    """What is wrong with one `group=option`, `key=value` or `key` of a command line or a code span."""
    token = token.strip("\"'")
    match = OVERRIDE.match(token)
    if not match or (not in_command and "=" not in token and "." not in token):
        return None
    prefix, key, value = match.groups()
    if key in config_groups():
        if not value or prefix == "~":
            return None
        missing = [o for o in value.split(",") if o not in config_groups()[key] and o != "null"]
        return f"config {key}={value}: no conf/{key}/{missing[0]}.yaml" if missing else None
    if "/" in key or prefix == "+" or key.split(".")[0] not in top_keys():
        return None
    if key.startswith("hydra.") and not in_command:  # `hydra.compose` is Hydra's Python API
        return None
    if key.startswith("trainer.") and key.split(".")[1] in trainer_arguments():
        return None
    return None if key in config_keys() else f"config key {key} is in no config of conf/"


@functools.cache
def trainer_arguments() -> frozenset[str]:
    """The arguments of Lightning's Trainer, which the `trainer` node is handed: each can be set,
    whether a file of conf/trainer/ names it or not (read from Lightning's source, not imported)."""
    from importlib.util import find_spec

    source = Path(find_spec("lightning").origin).parent / "pytorch" / "trainer" / "trainer.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    init = next(n for n in trainer.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return frozenset(a.arg for a in init.args.args + init.args.kwonlyargs)


@functools.cache
def top_keys() -> frozenset[str]:
    """The first parts of the config keys (`model`, `optim`, `seed`): a code span that starts with one
    of them followed by a dot is a config key."""
    return frozenset(k.split(".")[0] for k in config_keys()) | frozenset(config_groups())


def config_problems(text: str) -> list[str]:
    """Config groups, options and keys that conf/ does not have: every `key=value` of a command line
    (`python train.py ...`, `python -m minigpt <tool> ...`, `make train ARGS=...`) and every code
    span that is one override or one dotted key."""
    problems = []
    for code in code_of(text):
        code = code.split("#", 1)[0].replace('ARGS="', "").strip()
        command = COMMAND.search(code)
        if command:
            tokens = [t for t in command.group(1).split() if "=" in t]
            problems += [p for t in tokens if (p := override_problem(t, in_command=True))]
        elif " " not in code and not FILE_SUFFIX.search(code) and not re.search(r"\*|<|\(", code):
            problem = override_problem(code, in_command=False)
            problems += [problem] if problem else []
    return problems


def tool_problems(text: str) -> list[str]:
    return [f"tool {t} is not in TOOLS" for t in re.findall(r"python -m minigpt (\w+)", text) if t not in tools()]


def make_problems(text: str) -> list[str]:
    """`make <target>` in code whose target the Makefile does not have (variables before it skipped)."""
    problems = []
    for code in code_of(text):
        for words in re.findall(r"(?:^|[\s;(])make((?:\s+[^\s#]+)+)", code):
            target = next((w for w in words.split() if "=" not in w), None)
            if target and target not in make_targets() and re.fullmatch(r"[\w-]+", target):
                problems.append(f"make target {target} is not in the Makefile")
    return problems


def named_test_problems(text: str) -> list[str]:
    """`tests/test_x.py::test_y` whose file does not define test_y, and `tests/test_x.py -k word`
    where no test of the file has `word` in its name (pytest would select nothing)."""
    problems = []
    for path, name in re.findall(r"(tests/test_\w+\.py)::(\w+)", text):
        if (ROOT / path).is_file() and name not in defined_names(path):
            problems.append(f"test {path}::{name} does not exist")
    for path, word in re.findall(r"(tests/test_\w+\.py) -k (\w+)", text):
        source = (ROOT / path).read_text(encoding="utf-8") if (ROOT / path).is_file() else ""
        if source and not re.search(rf"def test_\w*{word}", source):
            problems.append(f"no test of {path} has {word} in its name")
    return problems


NAMES_IN_FILE = re.compile(
    r"((?:`[\w.]+(?:\(\))?`\s+(?:and|or)\s+)*`[\w.]+(?:\(\))?`)\s+(?:in|of|from)\s+`((?:minigpt|tests|scripts|benchmarks)/[\w/]+\.py)`"
)


def name_problems(text: str) -> list[str]:
    """Names said to live in a file (`hydra_tool` in `minigpt/cli.py`) that it does not define, and
    `Class.member` of a minigpt class that the class (or a minigpt class it extends) lacks."""
    problems = []
    for names, path in NAMES_IN_FILE.findall(text):
        if not (ROOT / path).is_file():
            continue
        for name in re.findall(r"`([\w.]+)", names):
            if name.split(".")[0] not in defined_names(path):
                problems.append(f"{name} is not defined in {path}")
    for cls, member in re.findall(r"`([A-Z]\w+)\.(\w+)`", text):
        if cls in classes() and member not in class_members(cls):
            problems.append(f"{cls}.{member} does not exist ({classes()[cls]})")
    return problems


def class_members(cls: str) -> frozenset[str]:
    """The members a minigpt class defines (its methods, class attributes and the `self.x` its
    methods assign), with those of the minigpt classes it extends."""
    node = class_node(cls)
    members = set(defined_names(classes()[cls])[cls])
    for child in ast.walk(node):
        targets = child.targets if isinstance(child, ast.Assign) else [getattr(child, "target", None)]
        members |= {
            t.attr
            for t in targets
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
        }
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in classes() and base.id != cls:
            members |= class_members(base.id)
    return frozenset(members)


def readme_section_problems(text: str) -> list[str]:
    """README "Section" pointers (as conf/'s comments write them) whose section does not exist."""
    headings = set(re.findall(r"^#+\s+(.+?)\s*$", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.M))
    return [f'README has no section "{s}"' for s in re.findall(r'README "([^"]+)"', text) if s not in headings]


CHECKS = (
    path_problems,
    config_problems,
    tool_problems,
    make_problems,
    named_test_problems,
    name_problems,
    readme_section_problems,
)


def drift(text: str) -> list[str]:
    """Everything a text names that does not exist, one line each."""
    return [problem for check in CHECKS for problem in check(text) if problem not in SHOWN_AS_ERRORS]


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("name", sorted(doc_texts()))
def test_what_a_text_names_exists(name):
    assert drift(doc_texts()[name]) == []


def test_a_renamed_path_is_reported():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert drift(text) == []
    renamed = text.replace("minigpt/checkpoint/format.py", "minigpt/checkpoint/formats.py")
    assert "path minigpt/checkpoint/formats.py does not exist" in drift(renamed)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("run `python train.py model=smal`", "config model=smal: no conf/model/smal.yaml"),
        ("```bash\npython train.py -m optim.lrr=1e-3,3e-3\n```", "config key optim.lrr is in no config of conf/"),
        ("the budget, `trainer.max_tme`, counts", "config key trainer.max_tme is in no config of conf/"),
        ("`python -m minigpt interpet ckpt=x`", "tool interpet is not in TOOLS"),
        ("then `make tests`", "make target tests is not in the Makefile"),
        ("see `tests/test_model.py::test_nothing_here`", "test tests/test_model.py::test_nothing_here does not exist"),
        ("`pytest tests/test_model.py -k nothing_here`", "no test of tests/test_model.py has nothing_here in its name"),
        ("the tool uses `friendly_error` in `minigpt/cli.py`", "friendly_error is not defined in minigpt/cli.py"),
        ("the mask is built in `GPT.attention_mask`", "GPT.attention_mask does not exist (minigpt/model.py)"),
        ('see README "Configs and overrides"', 'README has no section "Configs and overrides"'),
        ("`lstn.py` holds the baseline", "file lstn.py is nowhere in the repository"),
    ],
)
def test_each_kind_of_drift_is_reported(text, problem):
    assert drift(text) == [problem]


def test_a_notebooks_markdown_is_read_from_both_formats(tmp_path):
    percent = tmp_path / "nb.py"
    percent.write_text("# %% [markdown]\n# Run `make tset`.\n\n# %%\nx = 1  # `make nothing` in code\n")
    ipynb = tmp_path / "nb.ipynb"
    cells = [{"cell_type": "markdown", "source": ["Run `make tset`."]}, {"cell_type": "code", "source": ["`make no`"]}]
    ipynb.write_text(json.dumps({"cells": cells}))
    for path in (percent, ipynb):
        assert drift(notebook_markdown(path)) == ["make target tset is not in the Makefile"]


def test_names_that_exist_are_not_reported():
    text = (
        "`python train.py model=tiny optim.lr=3e-3 ~callbacks.ema hydra/launcher=local hydra.run.dir=x`, "
        "`make TORCH=torch==2.5.1 setup`, `top_p=0.9`, `trainer.max_time`, `hydra_tool` in `minigpt/cli.py`, "
        "`GPT.attention_bias`, `notebooks/01_*`, `python -m minigpt generate ckpt=x top_p=0.9`"
    )
    assert drift(text) == []


def test_every_module_is_on_the_api_page():
    api = set(re.findall(r"^::: ([\w.]+)", (DOCS / "api.md").read_text(encoding="utf-8"), flags=re.M))
    modules = set()
    for path in (ROOT / "minigpt").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] != "__main__":
            modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    missing = sorted(m for m in modules - api if m != "minigpt")
    assert missing == []


def test_every_tool_is_run_somewhere_in_the_docs():
    texts = " ".join(doc_texts().values())
    assert [t for t in tools() if f"python -m minigpt {t}" not in texts and f"{t}.py" not in texts] == []


def configs_tree() -> dict[str, str]:
    """The tree at the top of docs/configs.md: each entry (`model/`, `train.yaml`) with its text."""
    text = (DOCS / "configs.md").read_text(encoding="utf-8")
    block = re.search(r"```\nconf/\n(.*?)```", text, flags=re.S).group(1)
    entries: dict[str, str] = {}
    current = ""
    for line in block.splitlines():
        head = re.match(r"^  (\S+)", line)
        if head:
            current = head.group(1)
        entries[current] = entries.get(current, "") + " " + line
    return entries


def test_configs_page_names_every_group_option_and_tool():
    tree = configs_tree()
    missing = []
    for group, options in config_groups().items():
        entry = tree.get(f"{group}/", "")
        missing += [f"{group}/{o}" for o in sorted(options) if not re.search(rf"(?<![\w-]){o}(?![\w-])", entry)]
    listed = " ".join(tree.values())
    missing += [p.name for p in sorted(CONF.glob("*.yaml")) if p.name not in listed]
    assert missing == []


@pytest.mark.parametrize(
    ("page", "name"),
    [
        ("docs/tensorboard.md", "HEAD_SCORES"),
        ("docs/heads.md", "HEAD_SCORES"),
        ("docs/configs.md", "POS_ENCODINGS"),
        ("docs/reading-the-model.md", "POS_ENCODINGS"),
    ],
)
def test_a_page_that_enumerates_a_tuple_of_the_code_names_all_of_it(page, name):
    text = (ROOT / page).read_text(encoding="utf-8")
    assert [v for v in constant(name) if not re.search(rf"(?<![\w-]){v}(?!\w)", text)] == []


def test_conf_loads_as_yaml():
    """conf_keys reads every file of conf/ (a file it cannot read would hide its keys)."""
    assert all(isinstance(OmegaConf.load(p), DictConfig) for p in CONF.rglob("*.yaml"))


# ------------------------------------------------------------------ the learning path


def nav_pages() -> list[str]:
    """The pages of the site's navigation, in order (paths relative to docs/)."""
    import yaml

    def leaves(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in leaves(item)]
        return [p for value in node.values() for p in leaves(value)] if isinstance(node, dict) else []

    class Loader(yaml.SafeLoader):
        """mkdocs.yml's own tags (`!ENV [NAME, default]`) read as their default."""

    Loader.add_constructor("!ENV", lambda loader, node: loader.construct_sequence(node)[-1])
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    return leaves(config["nav"])


def links_of(markdown: str) -> set[str]:
    """The pages a markdown text links to, without their anchors."""
    return {href.split("#")[0] for href in re.findall(r"\]\(([^)\s]+)\)", markdown) if "://" not in href}


def where_next(page: str) -> str:
    text = (DOCS / page).read_text(encoding="utf-8")
    return text.split("\n## Where next\n", 1)[1] if "\n## Where next\n" in text else ""


def test_the_home_page_links_every_page_and_the_notebooks():
    linked = links_of((DOCS / "index.md").read_text(encoding="utf-8"))
    pages = [p for p in nav_pages() if p != "index.md" and not p.startswith("notebooks/")]
    assert [p for p in pages if p not in linked] == []
    assert any(p.startswith("notebooks/") for p in linked)


def test_every_page_ends_with_where_next_and_the_path_reaches_heads_vlm_and_the_notebooks():
    pages = [p for p in nav_pages() if p.endswith(".md") and p not in ("index.md", "api.md")]
    assert [p for p in pages if not links_of(where_next(p))] == []
    reached = set().union(*(links_of(where_next(p)) for p in pages))
    assert {"heads.md", "vlm.md"} <= reached
    assert any(p.startswith("notebooks/") for p in reached)


def test_the_notebooks_come_before_the_api_reference_in_the_navigation():
    pages = nav_pages()
    assert max(i for i, p in enumerate(pages) if p.startswith("notebooks/")) < pages.index("api.md")


def test_the_file_tree_of_the_contributing_page_names_every_module():
    text = (DOCS / "contributing.md").read_text(encoding="utf-8")
    tree = re.search(r"## The files\n\n```\n(.*?)```", text, flags=re.S).group(1)
    modules = sorted(p for p in (ROOT / "minigpt").rglob("*.py") if p.stem not in ("__init__", "__main__"))
    named = set(re.findall(r"[\w]+\.py", tree))
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in named and "commands" not in p.parts]
    assert missing == []


def test_the_option_reference_of_configs_md_is_the_schemas():
    """docs/configs.md's "Every option" section is what scripts/config_reference.py writes from the
    schemas: a new option, default, range or meaning shows there or this fails."""
    script = load_script("config_reference")
    text = (DOCS / "configs.md").read_text(encoding="utf-8")
    assert script.with_reference(text) == text, "run python scripts/config_reference.py"


def test_every_code_include_of_the_pages_names_something_the_file_defines():
    """The site's Python code comes from the source by name (scripts/mkdocs_source.py, the hook of
    mkdocs.yml): each include resolves, so `make docs` cannot fail on one, and the source carries
    no include markers for a reader to step over."""
    hook = load_script("mkdocs_source")
    pages = sorted(DOCS.glob("*.md"))
    shown = [m for page in pages for m in hook.INCLUDE.finditer(page.read_text(encoding="utf-8"))]
    assert len(shown) > 30, "the pages include their code by name"
    for page in pages:
        text = page.read_text(encoding="utf-8")
        hook.include_source(text, page.name)
        # an include of Python code the hook's pattern misses would reach pymdownx.snippets and fail there
        python_includes = re.findall(r'^[ \t]*--8<-- ["\'][^"\']*\.py[:"\'].*$', text, re.M)
        assert all(hook.INCLUDE.fullmatch(line) for line in python_includes), python_includes
    # CONTRIBUTING.md reaches the site through snippets, after the hook has run: no code by name there
    assert not hook.INCLUDE.search((ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8"))
    sources = [p for folder in ROOTS for p in (ROOT / folder).glob("**/*.py")]
    marker = re.compile(r"^\s*# --8<-- \[(start|end):", re.M)
    assert not [str(p) for p in sources if marker.search(p.read_text(encoding="utf-8"))]


def test_a_code_include_is_the_named_source_indented_like_its_line_and_a_missing_name_fails(tmp_path):
    from mkdocs.exceptions import PluginError

    hook = load_script("mkdocs_source")
    page = '??? note\n\n    ```python\n    --8<-- "minigpt/model.py:KVCache.advance"\n    ```\n'
    code = hook.include_source(page, "page.md")
    assert '    def advance(self, T: int) -> None:\n        """Count T new' in code
    assert "def reorder" not in code and "--8<--" not in code
    config = hook.include_source('--8<-- "minigpt/model.py:GPTConfig"', "page.md")
    assert config.startswith("@dataclass\nclass GPTConfig:")  # decorators come with their class
    assert hook.include_source('--8<-- "minigpt/model.py:ACTIVATION_FNS"', "p.md").startswith("ACTIVATION_FNS = {")
    with pytest.raises(PluginError, match=r"page.md: minigpt/model.py defines no 'GPT.nothing'"):
        hook.include_source('--8<-- "minigpt/model.py:GPT.nothing"', "page.md")
    untouched = '--8<-- "conf/ablation/no_scale.yaml"'
    assert hook.include_source(untouched, "page.md") == untouched
    with pytest.raises(PluginError, match="outside the project"):
        hook.include_source('--8<-- "../elsewhere.py:f"', "page.md")
    twice = ast.parse("class A:\n    @property\n    def v(self): ...\n    @v.setter\n    def v(self, x): ...\n")
    assert len(hook.definitions(twice)["A.v"]) == 2  # source_of refuses the name: "defines 'A.v' 2 times"
