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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from minigpt.errors import ConfigError, MinigptError, RunDirError
from minigpt.io import file_problem, printable

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
            check_added_keys(cfg)
            return fn(cfg)

    return wrapper


def check_added_keys(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """A key added with a leading `+` (`+trainer.limit_val_batches=4`) must be one something
    reads: an argument of the `_target_` of the node it lands in, or a new object of its own (a
    node with a `_target_`, such as `+callbacks.ema._target_=...`). Anything else (`+unknown=1`)
    would be accepted and ignored: one line naming it. `overrides` defaults to this job's."""
    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return
        overrides = list(HydraConfig.get().overrides.task)
        groups = set(HydraConfig.get().runtime.choices)
    else:
        groups = set()
    for override in overrides:
        key = override.split("=", 1)[0]
        if not key.startswith("+") or key.startswith("++"):
            continue  # ++ sets a key whether or not it exists: Hydra's own choice
        key = key[1:]
        if key.startswith("hydra.") or "/" in key or key in groups or "@" in key:
            continue  # Hydra's settings, or a config group added to the defaults
        problem = _added_key_problem(cfg, key)
        if problem:
            raise ConfigError(f"+{key}: {problem}; see the keys with --cfg job (+ adds an argument of a _target_)")


def _added_key_problem(cfg: DictConfig, key: str) -> str | None:
    """Why nothing reads the added `key` of `cfg`, or None when something does."""
    parts = key.split(".")
    for i, name in enumerate(parts):
        parent = OmegaConf.select(cfg, ".".join(parts[:i])) if i else cfg
        child = OmegaConf.select(cfg, ".".join(parts[: i + 1]))
        if name.startswith("_") and name.endswith("_"):  # _target_, _partial_: Hydra's own keys
            continue
        target = parent.get("_target_") if isinstance(parent, DictConfig) else None
        if target is not None and not _takes(str(target), name):
            return f"{target} takes no argument {name}"
        if isinstance(child, DictConfig) and "_target_" in child:
            continue  # an object (a new one, or a target's argument): its keys are checked against its target
        if target is not None or _is_collection(parent):
            return None  # an argument's value; or named entries (evaluate's strategies), which the tool checks
        if i == len(parts) - 1:
            where = ".".join(parts[:i]) or "the config"
            return f"{where} has no option {name}, and nothing would read it"
    return None


def _is_collection(node: object) -> bool:
    """Whether `node` is a mapping of named entries, each a mapping (or null, switched off)."""
    if not isinstance(node, DictConfig) or node._is_none() or node._is_missing():
        return False
    values = [node._get_node(key) for key in node]
    return any(isinstance(v, DictConfig) for v in values) and all(
        isinstance(v, DictConfig) or v._is_none() for v in values
    )


def _takes(target: str, name: str) -> bool:
    """Whether the callable `target` (a dotted path) takes an argument `name`; True when that
    cannot be told (instantiating it then reports what is wrong)."""
    import inspect

    from hydra.utils import get_object

    try:
        parameters = inspect.signature(get_object(target)).parameters.values()
    except Exception:  # an import error or a builtin without a signature: instantiate will say
        return True
    return any(p.kind is p.VAR_KEYWORD or p.name == name for p in parameters)


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
            try:
                register()
                check_overrides()  # an argument Hydra's parser cannot read: one line naming the character
                if asked == "1":
                    return composed()
                os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises a composition error instead of printing it
                return composed()
            except COMPOSE_ERRORS as e:
                if asked == "1":
                    raise
                fail(config_error(e))
            except KeyboardInterrupt:  # at any moment: composing a sweep, between jobs, loading data
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


@dataclass
class SweepProgress:
    """Where this process's sweep stands, for the line a Ctrl-C prints: how many jobs it has (when
    Hydra's basic sweeper can tell), those that ended, the one running, and the signal that asked
    the running job to stop."""

    jobs: int | None = None
    ended: list[str] = field(default_factory=list)
    running: str | None = None
    signal: str | None = None


SWEEP = SweepProgress()


def stop_requested(signal_name: str) -> None:
    """Called by the training run's signal handler (training/reliability.py): the running job
    saves and stops, and in a sweep no later job starts."""
    SWEEP.signal = signal_name


def interrupted() -> str:
    """The line a Ctrl-C ends a command with: in a sweep, which jobs ended and how many were not run."""
    if SWEEP.jobs is None and not SWEEP.ended and SWEEP.running is None:
        return "interrupted"
    parts = [f"ended: {'; '.join(SWEEP.ended)}" if SWEEP.ended else "no job ended"]
    if SWEEP.running:
        parts.append(f"interrupted before it could save: {SWEEP.running}")
    if SWEEP.jobs is not None:
        parts.append(f"not run: {SWEEP.jobs - len(SWEEP.ended) - (SWEEP.running is not None)} job(s)")
    return f"interrupted: the sweep stopped ({'; '.join(parts)})"


def _sweep_job(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """One job of a multirun: a user error is printed as one line naming the job. Hydra's basic
    sweeper then goes on with the other jobs (the job returns NaN and `SweepOutcome` exits 2 at
    the end); a search sweeper (Optuna) gets the error itself and records a failed trial. A job
    stopped by Ctrl-C or SIGTERM saves, and then the sweep stops: no later job starts."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    label = f"job {hydra_cfg.job.num} ({','.join(swept_overrides()) or 'no overrides'})"
    SWEEP.running, SWEEP.signal = label, None
    try:
        check_finite_options(cfg)
        check_added_keys(cfg)
        result = fn(cfg)
    except (*USER_ERRORS, MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not is_out_of_memory(e):
            raise
        print(f"error: {label}: {printable(one_line(e), None)}", file=sys.stderr, flush=True)
        SWEEP.running = None
        if not str(hydra_cfg.sweeper.get("_target_", "")).endswith("BasicSweeper"):
            raise
        FAILED_JOBS.append(label)
        SWEEP.ended.append(f"{label} failed")
        return math.nan
    SWEEP.running = None
    if SWEEP.signal is not None:
        SWEEP.ended.append(f"{label} stopped by {SWEEP.signal} and saved")
        raise KeyboardInterrupt
    SWEEP.ended.append(label)
    return result


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
    """A Hydra callback (conf/train.yaml): before a sweep, one line and exit code 2 for a sweep
    that cannot run (`check_sweep`); after a sweep in which jobs failed, one line listing them and
    exit code 2, instead of the traceback Hydra would print for the first failure."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_sweep(config)
        except MinigptError as e:
            fail(str(e))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if FAILED_JOBS:
            fail(f"{len(FAILED_JOBS)} job(s) of the sweep failed: {'; '.join(FAILED_JOBS)} (each error is above)")


def check_sweep(config: DictConfig) -> None:
    """A sweep that can run: its folder is no place a run must not write into (`check_run_place`),
    Hydra's basic sweeper has at least one job (`model.n_layer=range(0)` has none), and every
    range an Optuna search draws from is one Optuna accepts (low <= high, a log range above 0).
    Counts the basic sweeper's jobs for the line a Ctrl-C prints."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    check_run_place(Path(str(config.hydra.sweep.dir)), "sweep directory", "hydra.sweep.dir", only_reserved=True)
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    try:
        overrides = OverridesParser.create().parse_overrides(arguments)
    except HydraException:
        return  # the sweeper reports what it cannot read
    sweeper = str(config.hydra.sweeper.get("_target_", ""))
    if sweeper.endswith("BasicSweeper"):
        swept = [o for o in overrides if o.is_choice_sweep() or o.is_range_sweep()]  # a glob needs the sweeper
        empty = [o.input_line for o in swept if not list(o.sweep_string_iterator())]
        if empty:
            raise ConfigError(f"the sweep has no jobs: {empty[0]} gives no value; give each swept option a value")
        with contextlib.suppress(HydraException):  # a glob over a group: counted by the sweeper only
            SWEEP.jobs = math.prod(len(list(o.sweep_string_iterator())) for o in overrides if o.is_discrete_sweep())
    elif "optuna" in sweeper:
        check_search_ranges(overrides)


def check_search_ranges(overrides: list) -> None:
    """One line for an Optuna search range Optuna would refuse with a traceback mid-sweep."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    for override in overrides:
        try:
            create_optuna_distribution_from_override(override)
        except (ValueError, AssertionError) as e:
            problem = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
            raise ConfigError(
                f"{override.input_line} is no search range: {problem}; an interval needs low <= high, "
                f"and a log one low > 0"
            ) from None


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


# the folder this package sits in, a run directory no run may use
REPO_ROOT = Path(__file__).resolve().parents[1]
# what a minigpt run leaves in its directory: a folder holding one of them is an earlier run's
RUN_MARKERS = frozenset({".hydra", "checkpoints", "tensorboard", "train.log", "summary.json", ".train.lock"})


def check_run_place(
    path: Path, what: str = "run directory", option: str = "run_dir", only_reserved: bool = False
) -> None:
    """A run writes checkpoints, logs and a lock into its directory and owns it from then on: one
    line refusing the root of the file system, the home folder and the repository, and (unless
    `only_reserved`) a folder that holds other files than an earlier minigpt run's."""
    where = Path(path).expanduser().resolve()
    reserved = {Path("/"): "the root of the file system", Path.home().resolve(): "your home folder"}
    reserved[REPO_ROOT] = "minigpt's repository"
    if where in reserved:
        raise RunDirError(
            f"{what} {path} is {reserved[where]}, which a run must not write into; "
            f"pass {option}=<a new folder>, such as outputs/train/runs/mine"
        )
    if only_reserved or not where.is_dir():
        return
    held = sorted(p.name for p in where.iterdir())
    if held and not RUN_MARKERS.intersection(held):
        shown = printable(", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else ""), 200)
        raise RunDirError(
            f"{what} {path} holds files that are not a minigpt run's ({shown}); pass {option}=<a new or "
            f"empty folder>, or an earlier run's folder with resume=auto"
        )


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


# what every random generator a seed reaches accepts: numpy and Lightning's seed_everything take
# 0 ... 2**32 - 1, torch more
SEED_MAX = 2**32 - 1


def check_seed(seed, name: str = "seed", required: bool = False) -> int | None:
    """`seed` if it is an integer from 0 to SEED_MAX, or null (a random seed) unless `required`,
    else one line naming the option."""
    if seed is None and not required:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        shown = f"an integer of {seed.bit_length()} bits" if isinstance(seed, int) and seed > 10**100 else repr(seed)
        raise ConfigError(
            f"{name} must be an integer from 0 to {SEED_MAX}{'' if required else ' (or null for a random one)'}, "
            f"got {shown}"
        )
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


def read_text_file(
    value: str, option: str, instead: str, max_bytes: int | None = None, from_end: bool = False, why: str = ""
) -> str:
    """The UTF-8 text of the file an option names (`prompt_file`, `text_file`), or one line saying
    what is wrong with it and what to pass `instead`. A file larger than `max_bytes` is read only
    in part, its first (or with `from_end` its last) `max_bytes` bytes, saying so and `why` in one
    line on stderr: a file of any size costs no more memory than that."""
    path = Path(value).expanduser()
    problem = file_problem(path)  # a FIFO or /dev/zero is named, never opened
    if problem is not None:
        raise MinigptError(f"{option} {path} {problem}; pass a UTF-8 text file or {instead}")
    size = path.stat().st_size
    cut = max_bytes is not None and size > max_bytes
    with path.open("rb") as f:
        if cut and from_end:
            f.seek(size - max_bytes)
        data = f.read(max_bytes if cut else -1)
    if cut:
        part = "last" if from_end else "first"
        print(
            f"note: {option} {printable(path)} holds {size:,} bytes; {why}, so only its {part} {max_bytes:,} are read",
            file=sys.stderr,
        )
        data = _whole_characters(data, from_end)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MinigptError(
            f"{option} {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            f"pass a UTF-8 text file or {instead}"
        ) from None


def _whole_characters(data: bytes, from_end: bool) -> bytes:
    """`data` cut from a UTF-8 file without the partial character at the cut (at most 3 bytes)."""
    if from_end:
        skip = next((i for i, b in enumerate(data[:4]) if b & 0xC0 != 0x80), min(len(data), 4))
        return data[skip:]
    for back in range(min(4, len(data))):
        lead = data[len(data) - 1 - back]
        if lead & 0xC0 != 0x80:  # the last character's first byte: keep it only if it is whole
            need = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4
            return data if need <= back + 1 else data[: len(data) - 1 - back]
    return data


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
