"""What seqtool reports as its forecast ("model"): the network alone, or the mean of the network
and statistical forecasters (ETS, Theta), whichever did best on the validation part of the
training data; and prediction intervals calibrated on that part's errors.

Selection and calibration see only the training part: the network is trained on its first part,
the statistical forecasters are fitted on the same first part, and all of them forecast the last
part (the validation part) from every origin in it. The held-out tail is used once, to report.
Intervals are split-conformal, one width per step ahead: the half-width at level L for k steps is
the ceil((n+1) L)-th smallest of the n absolute validation errors k steps ahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from seqtool.forecast.baselines import ETS, Theta

#: the candidates, always with the network in them: a default that is a statistical method alone is not ours
CANDIDATES = (("network",), ("network", "ets"), ("network", "theta"), ("network", "ets", "theta"))
MIN_RESIDUALS = 5  # fewer errors than this k steps ahead: widths grow from the 1-step ones by sqrt(k)


@dataclass
class Combination:
    members: tuple[str, ...]
    ets: ETS | None
    theta: Theta | None
    widths: dict[int, list[float]] = field(default_factory=dict)  # level -> half-width for k = 1..K
    validation: dict[str, float] = field(default_factory=dict)  # candidate -> validation MASE (for the report)

    @property
    def name(self) -> str:
        return " + ".join(self.members)

    def table(self, network: np.ndarray, x: np.ndarray, origins: list[int], steps: int) -> np.ndarray:
        """The combined forecast table, given the network's for the same origins."""
        parts = {"network": network}
        if "ets" in self.members:
            parts["ets"] = self.ets.table(x, origins, steps)
        if "theta" in self.members:
            parts["theta"] = self.theta.table(x, origins, steps)
        return np.mean([parts[m] for m in self.members], axis=0)

    def bounds(self, forecast: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Interval bounds around forecast[..., j] (j = k - 1) at `level` percent."""
        w = np.asarray(self.widths[level])
        steps = forecast.shape[-1]
        if steps > len(w):  # past the calibrated steps: the random-walk growth
            w = np.concatenate([w, w[-1] * np.sqrt(np.arange(len(w) + 1, steps + 1) / len(w))])
        return forecast - w[:steps], forecast + w[:steps]

    def state(self) -> dict:
        return {"members": list(self.members), "widths": {str(k): v for k, v in self.widths.items()}, "validation": self.validation,
                "ets": None if self.ets is None else {**vars(self.ets), "params": self.ets.params.tolist()},
                "theta": None if self.theta is None else {**vars(self.theta), "indices": self.theta.indices.tolist()}}

    @classmethod
    def from_state(cls, state: dict) -> "Combination":
        ets = None if state["ets"] is None else ETS(**{**state["ets"], "params": np.asarray(state["ets"]["params"])})
        theta = None if state["theta"] is None else Theta(**{**state["theta"], "indices": np.asarray(state["theta"]["indices"])})
        return cls(tuple(state["members"]), ets, theta, {int(k): v for k, v in state["widths"].items()}, state.get("validation", {}))


def choose(network: np.ndarray, x: np.ndarray, origins: list[int], end: int, season: int, scale: float, levels: list[int],
           allow: bool = True) -> Combination:
    """Fit ETS and Theta on x[:origins[0] + 1], score every candidate on the targets before `end`
    (mean over steps ahead of the validation MASE), keep the best; calibrate its intervals."""
    fit_part = x[: origins[0] + 1]
    ets, theta = ETS.fit(fit_part, season), Theta.fit(fit_part, season)
    steps = network.shape[1]
    tables = {"network": network, "ets": ets.table(x, origins, steps), "theta": theta.table(x, origins, steps)}
    target_idx = np.asarray(origins)[:, None] + np.arange(1, steps + 1)[None, :]
    valid = target_idx < end
    actual = x[np.minimum(target_idx, len(x) - 1)]
    scores = {}
    for members in (CANDIDATES if allow else CANDIDATES[:1]):
        forecast = np.mean([tables[m] for m in members], axis=0)
        errors = np.abs(forecast - actual)
        per_k = [errors[valid[:, j], j].mean() for j in range(steps) if valid[:, j].any()]
        scores[" + ".join(members)] = float(np.mean(per_k) / scale) if per_k and scale else math.inf
    best = min(scores, key=scores.get)
    members = tuple(best.split(" + "))
    chosen = Combination(members, ets if "ets" in members else None, theta if "theta" in members else None, validation=scores)
    residuals = actual - np.mean([tables[m] for m in members], axis=0)
    chosen.widths = {level: conformal_widths(residuals, valid, level / 100) for level in levels}
    return chosen


def conformal_widths(residuals: np.ndarray, valid: np.ndarray, level: float) -> list[float]:
    """Split-conformal half-width per step ahead from the validation errors."""
    widths = []
    for j in range(residuals.shape[1]):
        r = np.abs(residuals[valid[:, j], j])
        if len(r) >= MIN_RESIDUALS:  # the ceil((n+1) L)-th smallest error (the largest when that is past n)
            rank = min(math.ceil((len(r) + 1) * level), len(r))
            widths.append(float(np.sort(r)[rank - 1]))
        else:
            widths.append(widths[0] * math.sqrt(j + 1) if widths else float("nan"))
    return widths
