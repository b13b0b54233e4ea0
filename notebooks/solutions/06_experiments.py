"""Solutions to the exercises of notebook 6 (06_experiments.py); tests/test_notebooks.py checks each."""


def swept_keys_by_hand(jobs):
    """The override keys whose values differ between jobs, in order of first appearance."""
    keys = []
    for job in jobs:
        keys += [k for k in job["overrides"] if k not in keys]
    varying = [k for k in keys if len({job["overrides"].get(k) for job in jobs}) > 1]
    return varying or keys


def job_label(job, keys):
    """'key=value, ...' for a job's values of `keys`; the job's name when there are none."""
    return ", ".join(f"{k}={job['overrides'].get(k, '-')}" for k in keys) or job["job"]


def first_step_below(curve, value):
    """The first step of a [(step, value)] curve whose value is below `value`, or None."""
    for step, v in curve:
        if v < value:
            return step
    return None
