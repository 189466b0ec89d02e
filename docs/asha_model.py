"""How many epochs ASHA should spend on the `asha` benchmark's shape, without training anything.

    .venv/bin/python docs/asha_model.py

32 configurations, 9 epochs, reduction factor 3, grace 1 epoch, 2 trials at a time, 50 seeds of made-up
learning curves. Two promotion rules:
- Ray Tune's ASHAScheduler (its own `_Bracket.on_result`): a trial reaching a rung continues unless it is
  below the rung's 1 - 1/rf percentile of the results recorded so far, so early trials see few rivals;
- promotion as in Li et al. 2020 ("A System for Massively Parallel Hyperparameter Tuning"): a trial that
  is not in the top 1/rf of its rung waits (a Tune PAUSE) and is resumed only if it gets there later.
  raymlops implements this one as `raymlops.search.promotion_asha.PromotionASHA` (`scheduler.mode=promote`, the
  default for 1-worker trials); tests/test_schedulers.py drives it through the same kind of replay.
Prints the median total-epochs ratio against FIFO (32 x 9 = 288 epochs) for each.
"""

from __future__ import annotations

import numpy as np
from ray.tune.schedulers.async_hyperband import _Bracket

N, MAX_T, RF, AT_ONCE = 32, 9, 3, 2


class _Trial:
    def __init__(self, i: int) -> None:
        self.trial_id = str(i)


def _accuracy(rng: np.random.Generator, quality: float, epoch: int) -> float:
    return quality * (epoch / MAX_T) ** 0.3 + rng.normal(0, 0.02)


def ray_asha(seed: int) -> int:
    rng = np.random.default_rng(seed)
    quality, bracket = rng.random(N), _Bracket(1, MAX_T, RF, 0)
    queue, running, total = list(range(N)), {}, 0
    while queue or running:
        while queue and len(running) < AT_ONCE:
            running[queue.pop(0)] = 0
        for i in list(running):
            running[i] += 1
            total += 1
            stop = bracket.on_result(_Trial(i), running[i], _accuracy(rng, quality[i], running[i])) == "STOP"
            if stop or running[i] == MAX_T:
                del running[i]
    return total


def promotion_asha(seed: int) -> int:
    rng = np.random.default_rng(seed)
    quality, rungs = rng.random(N), [1, 3]
    recorded: dict[int, dict[int, float]] = {r: {} for r in rungs}
    queue, running, paused, total = list(range(N)), {}, {}, 0

    def top(rung: int) -> list[int]:
        return sorted(recorded[rung], key=lambda i: -recorded[rung][i])[: len(recorded[rung]) // RF]

    while queue or running:
        while len(running) < AT_ONCE:
            promotable = [i for r in reversed(rungs) for i in top(r) if paused.get(i) == r]
            if promotable:
                running[promotable[0]] = paused.pop(promotable[0])
            elif queue:
                running[queue.pop(0)] = 0
            else:
                break
        for i in list(running):
            running[i] += 1
            total += 1
            epoch = running[i]
            if epoch == MAX_T:
                del running[i]
            elif epoch in recorded:
                recorded[epoch][i] = _accuracy(rng, quality[i], epoch)
                if i not in top(epoch):
                    paused[i] = running.pop(i)
    return total


if __name__ == "__main__":
    for name, rule in (("Ray Tune ASHAScheduler", ray_asha), ("promotion (Li et al.)", promotion_asha)):
        print(f"{name:24s} epochs ratio vs FIFO: {np.median([rule(s) for s in range(50)]) / (N * MAX_T):.3f}")
