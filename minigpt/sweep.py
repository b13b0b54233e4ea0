"""Hydra sweeps (`python train.py -m ...`): a failed job is one line naming it and the sweep goes
on, a sweep that cannot run is refused before its first job, and Ctrl-C says which jobs ended."""

from __future__ import annotations

import contextlib
import math
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from minigpt.cli import USER_ERRORS, fail, is_out_of_memory, one_line
from minigpt.errors import ConfigError, MinigptError
from minigpt.io import check_run_place, printable
from minigpt.options import check_job

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


def sweep_job(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """One job of a multirun: a user error is printed as one line naming the job. Hydra's basic
    sweeper then goes on with the other jobs (the job returns NaN and `SweepOutcome` exits 2 at
    the end); a search sweeper (Optuna) gets the error itself and records a failed trial. A job
    stopped by Ctrl-C or SIGTERM saves, and then the sweep stops: no later job starts."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    label = f"job {hydra_cfg.job.num} ({','.join(swept_overrides()) or 'no overrides'})"
    SWEEP.running, SWEEP.signal = label, None
    try:
        check_job(cfg)
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

    if not in_multirun():
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
        print(compare_line(config.hydra.sweep.dir), flush=True)
        if FAILED_JOBS:
            fail(f"{len(FAILED_JOBS)} job(s) of the sweep failed: {'; '.join(FAILED_JOBS)} (each error is above)")


def compare_line(sweep_dir: str) -> str:
    """The commands that compare a sweep's jobs, ready to paste: TensorBoard on the sweep's folder
    names each run `<job>/tensorboard/<swept values>` (on all of `outputs` the names start with the
    long path to the sweep, which TensorBoard's run list cuts off), and `report` tabulates them."""
    folder = printable(sweep_dir, None)
    quoted = shlex.quote(folder)
    return (
        f"sweep folder: {folder}\n"
        f"compare its runs: tensorboard --logdir {quoted}\n"
        f"                  python -m minigpt report dir={quoted}"
    )


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


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (`-m`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
