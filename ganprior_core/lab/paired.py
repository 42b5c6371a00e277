"""Paired differences (one setting minus another on the same images): their mean and its
standard error, as every research table here reports them."""
from __future__ import annotations

import math
import statistics


def mean_and_error(values: list[float]) -> tuple[float, float | None]:
    """The mean and its standard error (None for a single value)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None


def format_mean_se(values: list[float]) -> str:
    """'+m ± se' of paired differences (two decimals); '–' for none, the value alone for one."""
    if not values:
        return "–"
    mean, error = mean_and_error(values)
    return f"{mean:+.2f}" if error is None else f"{mean:+.2f} ± {error:.2f}"
