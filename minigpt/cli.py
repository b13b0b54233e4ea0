"""What the entry points share: one-line errors instead of tracebacks, and the run directory."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from minigpt.errors import MinigptError

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
    """Turn user errors raised by `fn` into one line and exit code 2. In a Hydra multirun the
    error is re-raised instead, so Hydra records that job as failed and runs the others."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return fn(cfg)
        except (MinigptError, OmegaConfBaseException, OSError) as e:
            if _in_multirun():
                raise
            fail(one_line(e))
        except KeyboardInterrupt:
            fail("interrupted", code=130)

    return wrapper


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """The same one line and exit code 2 for scripts outside Hydra (the benchmarks):
    `with user_errors(): main()`."""
    try:
        yield
    except (MinigptError, OmegaConfBaseException, OSError) as e:
        fail(one_line(e))
    except KeyboardInterrupt:
        fail("interrupted", code=130)


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
