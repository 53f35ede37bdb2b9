"""The arithmetic of a rollout, pure: which wave each member is in, and when failures halt it."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

DEFAULT_WAVES = (1, 10, 25, 50, 100)
CANARY = 0  # the canary is wave 0; waves 1..n follow the percentages
NOT_IN_A_WAVE = -1  # skipped at plan time


def check_percentages(percentages: Sequence[int]) -> tuple[int, ...]:
    values = tuple(int(p) for p in percentages)
    if not values or values[-1] != 100:
        raise ValueError("the last wave must be 100 (% of the cohort)")
    if any(b <= a for a, b in itertools.pairwise(values)) or values[0] <= 0:
        raise ValueError("wave percentages must rise, each above 0, e.g. 1,10,25,50,100")
    return values


def assign(count: int, canary: int, percentages: Sequence[int]) -> list[int]:
    """The wave of each of `count` members in rollout order: the first `canary` are wave 0,
    then wave k holds those up to ceil(percentage_k × count), cumulative (the canary counts).
    A wave the ones before it already filled gets nobody."""
    percentages = check_percentages(percentages)
    canary = max(0, min(canary, count))
    result = [CANARY] * canary
    for number, percent in enumerate(percentages, start=1):
        reach = max(canary, math.ceil(percent * count / 100))
        result += [number] * (reach - len(result))
    return result


def over_budget(*, canary_failed: bool, failed: int, finished: int, budget_percent: float) -> bool:
    """Any failure of the canary halts; after it, a share of failed among finished members above
    the budget does (5 %: 1 failed of 20 finished is fine, 2 of 20 are not)."""
    if canary_failed:
        return True
    return finished > 0 and failed * 100 > budget_percent * finished
