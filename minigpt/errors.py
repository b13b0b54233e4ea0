"""User-facing errors: each carries one line that names the problem and the fix.

Entry points catch `MinigptError`, print its message and exit non-zero without a traceback;
anything else is a bug and keeps its traceback.
"""


class MinigptError(Exception):
    """A problem with the user's input (config, corpus, checkpoint, prompt), not with the code."""


class ConfigError(MinigptError, ValueError):
    """An invalid or inconsistent configuration value."""


class DataError(MinigptError):
    """A corpus that is missing, unreadable or unusable."""


class CheckpointError(MinigptError):
    """A checkpoint that is missing, corrupt, unsafe or incompatible."""


class VocabularyError(MinigptError, ValueError):
    """Text containing characters the model's vocabulary does not have."""


class TrainingDiverged(MinigptError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is kept."""


class RunDirError(MinigptError):
    """A run directory that holds an earlier run, or that cannot be written."""
