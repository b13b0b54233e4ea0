"""What the entry points share: one-line errors instead of tracebacks, and the run directory."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from minigpt.errors import ConfigError, MinigptError
from minigpt.io import file_problem

log = logging.getLogger("minigpt")

# `${minigpt.or:a,b}` is a if it is set, else b: conf/train.yaml makes Hydra's run directory
# `run_dir` when given, so Hydra's .hydra/ and train.log land beside the run's checkpoints
if not OmegaConf.has_resolver("minigpt.or"):
    OmegaConf.register_new_resolver("minigpt.or", lambda value, default: default if value in (None, "") else value)


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit non-zero."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def one_line(e: BaseException) -> str:
    """The message of a user error. A file-system error (a read-only or full disk, a folder where
    a file was expected) that no check caught names the path and the cause."""
    if isinstance(e, OSError) and not isinstance(e, MinigptError):
        where = f" {e.filename}" if e.filename else ""
        return f"cannot use{where}: {e.strerror or e}; check that the path exists, is the right kind and is writable"
    if isinstance(e, OmegaConfBaseException):
        return str(e).strip().splitlines()[0]
    return str(e)


def friendly_errors(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn user errors raised by `fn` into one line and exit code 2. In a Hydra multirun a failed
    job is one line naming the job, and the sweep goes on with the others (`SweepOutcome` then
    exits 2)."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        if _in_multirun():
            return _sweep_job(fn, cfg)
        with user_errors():
            check_finite_options(cfg)
            return fn(cfg)

    return wrapper


def check_finite_options(cfg: object, prefix: str = "") -> None:
    """NaN and infinity are no setting of any tool (`trainer.gradient_clip_val=nan` would turn every
    gradient into NaN, `temperature=inf` sample uniformly): one line naming the first option that
    holds one, before the tool does anything."""
    if isinstance(cfg, DictConfig | ListConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)  # interpolations stay strings: nothing is resolved
    items = cfg.items() if isinstance(cfg, dict) else enumerate(cfg) if isinstance(cfg, list) else ()
    for key, value in items:
        name = f"{prefix}.{key}" if prefix and isinstance(key, str) else f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        check_finite_options(value, name)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """One line and exit code 2 for a user error raised in the block, as `friendly_errors` gives
    Hydra entry points; scripts outside Hydra (the benchmarks) use `with user_errors(): main()`."""
    try:
        yield
    except USER_ERRORS as e:
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
            register()
            check_overrides()  # an argument Hydra's parser cannot read: one line naming the character
            asked = os.environ.get("HYDRA_FULL_ERROR")
            if asked == "1":
                return composed()
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises a composition error instead of printing it
            try:
                return composed()
            except COMPOSE_ERRORS as e:
                fail(config_error(e))
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


TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _field_type(e: BaseException) -> str | None:
    """`an integer (or null)`: what the typed field `e` failed on takes, in words; None when the
    field is not a dataclass field of a simple type."""
    import dataclasses
    import typing

    if not dataclasses.is_dataclass(e.object_type):
        return None
    hint = typing.get_type_hints(e.object_type).get(str(e.key))
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    word = TYPE_WORDS.get(args[0])
    if word is None:
        return None
    return f"{word} (or null)" if type(None) in typing.get_args(hint) else word


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
# the jobs of this process's sweep that failed with a user error, for SweepOutcome
FAILED_JOBS: list[str] = []


def _sweep_job(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """One job of a multirun: a user error is printed as one line naming the job. Hydra's basic
    sweeper then goes on with the other jobs (the job returns NaN and `SweepOutcome` exits 2 at
    the end); a search sweeper (Optuna) gets the error itself and records a failed trial."""
    from hydra.core.hydra_config import HydraConfig

    try:
        check_finite_options(cfg)
        return fn(cfg)
    except USER_ERRORS as e:
        hydra_cfg = HydraConfig.get()
        label = f"job {hydra_cfg.job.num} ({','.join(swept_overrides()) or 'no overrides'})"
        print(f"error: {label}: {one_line(e)}", file=sys.stderr, flush=True)
        if not str(hydra_cfg.sweeper.get("_target_", "")).endswith("BasicSweeper"):
            raise
        FAILED_JOBS.append(label)
        return math.nan


def swept_overrides() -> list[str]:
    """This job's values of what the sweep varies (`model.pos_encoding=rope`): the overrides whose
    key the command line sweeps (`a=1,2`, `range(...)`, `choice(...)`); all of the job's overrides
    when that cannot be told (a search sweeper, a job in another process); [] outside a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not _in_multirun():
        return []
    task = list(HydraConfig.get().overrides.task)
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in sys.argv[1:] if not a.startswith("-")])
    except Exception:  # an argument Hydra's parser does not read: name the job by all its overrides
        return task
    swept = {o.key_or_group for o in parsed if o.is_sweep_override()}
    mine = [o for o in task if o.split("=", 1)[0].lstrip("+~") in swept]
    return mine or task


class SweepOutcome(Callback):
    """A Hydra callback (conf/train.yaml): after a sweep in which jobs failed, one line listing
    them and exit code 2, instead of the traceback Hydra would print for the first failure."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if FAILED_JOBS:
            fail(f"{len(FAILED_JOBS)} job(s) of the sweep failed: {'; '.join(FAILED_JOBS)} (each error is above)")


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


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


def check_writable(path: Path, option: str) -> None:
    """One line unless a file or folder can be created at `path`: its nearest existing ancestor
    must be a folder we can write in (tried with a temporary file, which also catches read-only
    disks and, for root, folders such as /sys). Cheap, so tools call it before any real work."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{option}={path} cannot be written: {folder} is a file, not a folder; pass another {option}")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(
            f"{option}={path} cannot be written: {folder} is not writable ({e.strerror or e}); "
            f"pass {option}= in a writable folder"
        ) from None


def check_int(value, name: str, low: int, hint: str = "") -> int:
    """`value` if it is an integer >= `low`, else one line naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}{'; ' + hint if hint else ''}")
    return value


def check_seed(seed, name: str = "seed") -> int | None:
    """`seed` if it is an integer or null (a random seed), else one line naming the option."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"{name} must be an integer (or null for a random one), got {seed!r}")
    return seed


def check_unknown(unknown) -> str:
    """The policy for characters outside the vocabulary: error, skip or one replacement character."""
    if not isinstance(unknown, str) or (unknown not in ("error", "skip") and len(unknown) != 1):
        raise ConfigError(f"unknown={unknown!r} is not a policy: use error, skip or one character of the vocabulary")
    return unknown


def check_out_dir(out_dir: str | Path) -> Path:
    """A folder the results can go into without replacing anything: new, or existing and empty,
    and writable. Checked before any work, so a refused run costs nothing and changes nothing."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out_dir={out_dir} is a file, not a folder; pass out_dir=<a new folder>")
    if out_dir.is_dir():
        held = sorted(p.name for p in out_dir.iterdir())
        if held:
            shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
            raise ConfigError(
                f"out_dir={out_dir} already holds {shown}; pass out_dir=<a new folder> (the default is a new "
                f"timestamped one) or move those files away"
            )
    check_writable(out_dir, "out_dir")
    return out_dir


def read_text_file(value: str, option: str, instead: str) -> str:
    """The UTF-8 text of the file an option names (`prompt_file`, `text_file`), or one line saying
    what is wrong with it and what to pass `instead`."""
    path = Path(value).expanduser()
    problem = file_problem(path)  # a FIFO or /dev/zero is named, never opened
    if problem is not None:
        raise MinigptError(f"{option} {path} {problem}; pass a UTF-8 text file or {instead}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MinigptError(
            f"{option} {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            f"pass a UTF-8 text file or {instead}"
        ) from None


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
