"""The Hydra glue every entry point shares: composing a tool's config, and one line with exit code 2
instead of a traceback for a user error or a config that does not compose.

A sweep's jobs go through `minigpt/sweep.py`, what an option may hold through `minigpt/options.py`,
and the checks of paths and files through `minigpt/io.py`."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from minigpt.errors import MinigptError
from minigpt.io import printable
from minigpt.options import check_job

log = logging.getLogger("minigpt")


class PrintableRecords(logging.Filter):
    """Every log line of minigpt as `printable` makes it: a path or a value from a file (a run
    directory, a checkpoint's name, a sample) cannot move the cursor or recolour the terminal,
    nor forge a line of the run's train.log."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(record.getMessage(), None, keep="\t"), None
        return True


log.addFilter(PrintableRecords())

# `${minigpt.or:a,b}` is a if it is set, else b: conf/train.yaml makes Hydra's run directory
# `run_dir` when given, so Hydra's .hydra/ and train.log land beside the run's checkpoints
if not OmegaConf.has_resolver("minigpt.or"):
    OmegaConf.register_new_resolver("minigpt.or", lambda value, default: default if value in (None, "") else value)


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit non-zero. The line is made printable: a path or a value
    it quotes from a file cannot move the cursor or recolour the terminal."""
    print(f"error: {printable(message, None)}", file=sys.stderr, flush=True)
    sys.exit(code)


def one_line(e: BaseException) -> str:
    """The message of a user error. A file-system error (a read-only or full disk, a folder where
    a file was expected) that no check caught names the path and the cause."""
    if isinstance(e, OSError) and not isinstance(e, MinigptError):
        where = f" {e.filename}" if e.filename else ""
        return f"cannot use{where}: {e.strerror or e}; check that the path exists, is the right kind and is writable"
    if isinstance(e, OmegaConfBaseException):
        return str(e).strip().splitlines()[0]
    if is_out_of_memory(e):
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        return (
            f"out of memory ({detail}); the memory estimates did not foresee it: lower the sizes of this "
            f"command (batch_size, num_samples, max_new_tokens, the model) or free memory"
        )
    return str(e)


def is_out_of_memory(e: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, torch's OutOfMemoryError (CUDA), or the
    RuntimeError torch's CPU allocator raises (`DefaultCPUAllocator: can't allocate memory`)."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    return isinstance(e, RuntimeError) and any(
        words in str(e) for words in ("can't allocate memory", "out of memory", "Cannot allocate memory")
    )


# whether the user set HYDRA_FULL_ERROR=1 (hydra_tool sets it for Hydra itself either way)
FULL_ERROR_ASKED = [False]


def friendly_errors(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn user errors raised by `fn` into one line and exit code 2. In a Hydra multirun a failed
    job is one line naming the job, and the sweep goes on with the others (`SweepOutcome` then
    exits 2)."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        from minigpt.sweep import in_multirun, sweep_job  # sweep.py builds on this module

        if in_multirun():
            return sweep_job(fn, cfg)
        if FULL_ERROR_ASKED[0]:  # the schemas' checks raise, for the traceback Hydra's own errors give
            check_job(cfg)
        with user_errors():
            check_job(cfg)
            return fn(cfg)

    return wrapper


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """One line and exit code 2 for a user error raised in the block, as `friendly_errors` gives
    Hydra entry points; scripts outside Hydra (the benchmarks) use `with user_errors(): main()`."""
    try:
        yield
    except USER_ERRORS as e:
        fail(one_line(e))
    except (MemoryError, RuntimeError) as e:  # an allocation that failed anywhere in the tool
        if not is_out_of_memory(e):
            raise
        fail(one_line(e))
    except KeyboardInterrupt:
        fail("interrupted", code=130)


def hydra_tool(config_path: str, config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """The entry point of every tool (minigpt/commands/): Hydra composes `conf/<config_name>.yaml`,
    checking it against the typed schemas (minigpt/configs.py), and calls the decorated function
    inside `friendly_errors`. A config that does not compose (an unknown key or option, a wrong
    type, an unreadable override) is one line and exit code 2 instead of Hydra's report; set
    HYDRA_FULL_ERROR=1 for Hydra's full traceback."""
    import hydra

    from minigpt.configs import register

    def decorate(fn: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        composed = hydra.main(config_path=config_path, config_name=config_name, version_base="1.3")(friendly_errors(fn))

        @functools.wraps(fn)
        def main() -> Any:
            asked = os.environ.get("HYDRA_FULL_ERROR")
            FULL_ERROR_ASKED[0] = asked == "1"
            if asked_for_help(config_name):
                return None
            try:
                register()
                check_overrides()  # an argument Hydra's parser cannot read: one line naming the character
                os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises a composition error instead of printing it
                return composed()
            except COMPOSE_ERRORS as e:
                if asked == "1":
                    raise
                fail(config_error(e))
            except KeyboardInterrupt:  # at any moment: composing a sweep, between jobs, loading data
                from minigpt.sweep import interrupted

                fail(interrupted(), code=130)
            except ValueError as e:  # Hydra's check of its own flags, e.g. -m with --cfg
                if not str(e).startswith("Only one of --run, --multirun"):
                    raise
                fail(f"{e}; to see the config of one job of a sweep, drop -m: --cfg job with that job's overrides")
            finally:
                if asked is None:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                else:
                    os.environ["HYDRA_FULL_ERROR"] = asked

        return main

    return decorate


def asked_for_help(config_name: str) -> bool:
    """Print the tool's --help, made from its schema (`configs.tool_help`), when the command line
    asks for it: only the tool's own groups and options, each with its type, default and meaning."""
    if not any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        return False
    from minigpt.configs import tool_help

    print(tool_help(config_name))
    return True


def config_error(e: BaseException) -> str:
    """One line for a config that does not compose: an unknown key names the keys it could be, an
    unknown option lists the options, a wrong type says what was expected; otherwise Hydra's
    message and OmegaConf's cause joined, without the search path and the HYDRA_FULL_ERROR hint."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = e.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.full_key:
        return _unknown_key(cause)
    if isinstance(cause, ValidationError) and _field_type(cause) is not None:
        return f"{cause.full_key} must be {_field_type(cause)}, got {cause.value!r}"
    if isinstance(e, MissingConfigException):
        return _missing_option(str(e))
    noise = ("full_key:", "object_type=", "reference_type=", "Config search path", "provider=", "Set the environment")
    parts: list[str] = []
    while e is not None:
        for line in str(e).splitlines():
            line = line.strip().rstrip(".").removeprefix("Error merging override ")
            if line and not line.startswith(noise) and line not in parts:
                parts.append(line)
        e = e.__cause__
    return ": ".join(parts[:2]) + "; see the options with --help, or the composed config with --cfg job"


def _field_type(e: BaseException) -> str | None:
    """`an integer >= 1 (or null)`: what the typed field `e` failed on takes, in the words of its
    declaration (`minigpt/schema.py`); None when the field is not a dataclass field."""
    import dataclasses

    from minigpt.schema import declared, expected

    if not dataclasses.is_dataclass(e.object_type) or str(e.key) not in declared(e.object_type):
        return None
    hint, meta = declared(e.object_type)[str(e.key)]
    return expected(hint, meta)


def _unknown_key(e: BaseException) -> str:
    """`model.n_layers is not a key of model; did you mean model.n_layer?` from OmegaConf's error."""
    import dataclasses
    import difflib

    parent, _, key = str(e.full_key).rpartition(".")
    known = [f.name for f in dataclasses.fields(e.object_type)] if dataclasses.is_dataclass(e.object_type) else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    where = f"a key of {parent}" if parent else "a config key"
    hint = f"did you mean {parent + '.' if parent else ''}{close[0]}?" if close else "see --cfg job for the keys"
    if not known:  # an untyped node takes new keys
        hint += f" (a new key needs a leading +: +{e.full_key}=...)"
    return f"{e.full_key} is not {where}; {hint}"


def _missing_option(message: str) -> str:
    """`model=foo`: the option asked for and the group's options, schemas left out."""
    lines = [line.strip() for line in message.split("Config search path")[0].splitlines() if line.strip()]
    options = [line for line in lines[2:] if not line.endswith("_schema")]
    head = lines[0].rstrip(".")
    return f"{head}; the options are {', '.join(options)}" if options else head


USER_ERRORS = (MinigptError, OmegaConfBaseException, OSError)
# what Hydra raises when a config does not compose (HYDRA_FULL_ERROR=1)
COMPOSE_ERRORS = (HydraException, OmegaConfBaseException)


def run_dir_of(cfg: DictConfig) -> Path:
    """`cfg.run_dir` when set (tests, scripts), else the directory Hydra made for this job."""
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    raise MinigptError("no run directory: pass run_dir=... when calling outside of Hydra")


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, but a `MinigptError` raised by the target comes out as itself
    (one clear line) instead of wrapped in Hydra's InstantiationException."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, MinigptError):
            raise e.__cause__ from None
        raise


def require(cfg: DictConfig, key: str, hint: str) -> Any:
    """The value of a mandatory (`???`) option, or one clear error naming it."""
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise MinigptError(f"{key} is required: {hint}")
    return cfg[key]


def quiet_libraries() -> None:
    """Silence warnings that are about Lightning's defaults, not about the user's run."""
    for pattern in (
        ".*does not have many workers.*",
        ".*The number of training batches.*",
        ".*Checkpoint directory .* exists and is not empty.*",
        ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
        ".*LeafSpec.*",
        ".*when logging on epoch level in distributed setting.*",  # our epoch metrics are already synced
    ):
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def check_overrides(argv: list[str] | None = None) -> None:
    """One line and exit code 2 for a `key=value` argument Hydra's override parser cannot read (a
    lone quote, a non-ASCII or control character outside quotes), naming the character and how to
    quote it. `hydra_tool` calls this before Hydra parses the command line; other arguments
    (flags, `--cfg job`) are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for arg in sys.argv[1:] if argv is None else argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            parser.parse_overrides([arg])
        except HydraException as e:
            key = arg.split("=", 1)[0]
            fail(
                f"{_unreadable_override(arg, str(e))}; quote the value, as '{key}=\"...\"', or pass the text in a file"
            )


def _unreadable_override(arg: str, message: str) -> str:
    """What Hydra's parser could not read in `arg`: the character its lexer stopped at, or the
    first line of its grammar error."""
    lines = message.splitlines()
    if not lines[0].startswith("LexerNoViableAltException") or len(lines) < 2 or "^" not in lines[1]:
        return f"Hydra cannot read the argument {arg!r} ({lines[0][:120]})"
    at = lines[1].find("^") - len(lines[0]) + len(arg)  # the caret points into the argument, printed last
    where = f" at {arg[at]!r} (character {at + 1})" if 0 <= at < len(arg) else ""
    return (
        f"Hydra cannot read the argument {arg!r}{where}: outside quotes, a value may not hold a quote, "
        f"a control or a non-ASCII character"
    )
