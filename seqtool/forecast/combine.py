"""What seqtool reports as its forecast ("model"): a weighted mean of the network and the
statistical members (AutoETS, AutoARIMA, AutoTheta: statistical.py), with prediction intervals
calibrated on this series' own errors.

Combining beats selecting: which single forecaster wins on a few validation points is mostly
noise, while a mean of decent forecasters is rarely far from the best of them.

- *Weights, one set per step ahead.* Every member forecasts the validation part (the last n_val
  values of the training part: the network did not train on them, the statistical members were
  fitted before them) from each origin in it, 1..K steps ahead. At each k the raw weights are the
  convex ones whose combined validation error k steps ahead has the least mean square (Bates and
  Granger's optimal weights from the members' error second moments, kept >= 0): a network trained
  on one-step errors is often the best member at k = 1 and a weak one at k = 12, so one compromise
  weight would serve neither; and AutoETS, AutoARIMA and AutoTheta often make nearly the same
  errors, so weighing each by its own accuracy (inverse MSE) counts one opinion three times and
  drowns a different, better member. A member whose validation MSE is more than TRIM times the
  median member's is left out (weight 0: equal weights would otherwise hand a broken fit a full
  share); the others' raw weights are shrunk toward equal weights by n / (n + SHRINK), n the
  validation origins with a target k steps ahead. Past K the weights of K hold. The statistical
  members are then refitted on the whole training part for the forecasts that are reported.
- *Intervals.* Split-conformal per step ahead, from the combination's errors at rolling origins
  over the training part (the latest CALIBRATION_ORIGINS of them): the half-width at level L, k
  steps ahead, is the ceil((n+1) L)-th smallest of the n absolute errors k steps ahead. Errors from
  before the validation part are in-sample for the network and the statistical fits, so they are
  scaled by how much larger the validation part's errors are (never smaller). With fewer than
  MIN_RESIDUALS errors at a step the rank is the 90% upper confidence bound of that quantile
  (wider), past the largest error the largest one grows by sqrt(k) from the last step that had one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from seqtool.core.errors import SeqtoolError
from seqtool.forecast.statistical import Statistical

SHRINK = 30  # validation origins worth as much as the prior of equal weights
TRIM = 4.0  # a member whose validation MSE exceeds this multiple of the median member's is left out
CALIBRATION_ORIGINS = 400  # rolling origins behind the interval widths (the latest ones)
MIN_RESIDUALS = 30  # fewer errors than this at a step: the width says so and is widened


@dataclass
class Combination:
    weights: dict[str, list[float]]  # member -> its weight at k = 1..K (each k's sum to 1; 'network' and the statistical kinds)
    members: dict[str, Statistical] = field(default_factory=dict)  # fitted on the whole training part
    widths: dict[int, list[float]] = field(default_factory=dict)  # level -> half-width for k = 1..K
    residuals: list[int] = field(default_factory=list)  # errors behind each step's widths
    validation: dict[str, float] = field(default_factory=dict)  # member (and the combination) -> validation MASE
    inflation: float = 1.0  # how much the in-sample errors were scaled up

    @property
    def name(self) -> str:
        """The weights at k = 1 and, where they differ, at the last calibrated k."""
        def at(j: int) -> str:
            return " + ".join(f"{w[min(j, len(w) - 1)]:.2f} {m}" for m, w in self.weights.items() if w[min(j, len(w) - 1)] > 0)

        steps = max((len(w) for w in self.weights.values()), default=1)
        first, last = at(0), at(steps - 1)
        return first if first == last else f"{first} at k=1, {last} at k={steps}"

    def table(self, network: np.ndarray, x: np.ndarray, origins: list[int], steps: int) -> np.ndarray:
        """The combined forecast table, given the network's for the same origins."""
        tables = {"network": network}
        for kind, member in self.members.items():
            if any(w > 0 for w in self.weights.get(kind, [])):
                tables[kind] = member.table(x, origins, steps)
        return weighted_mean(tables, self.weights)

    def bounds(self, forecast: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Interval bounds around forecast[..., j] (j = k - 1) at `level` percent."""
        w = np.asarray(self.widths[level])
        steps = forecast.shape[-1]
        if steps > len(w):  # past the calibrated steps: the random-walk growth
            w = np.concatenate([w, w[-1] * np.sqrt(np.arange(len(w) + 1, steps + 1) / len(w))])
        return forecast - w[:steps], forecast + w[:steps]

    def few_residuals(self) -> dict[int, int]:
        """Steps ahead (k) whose widths rest on fewer than MIN_RESIDUALS errors -> how many."""
        return {j + 1: n for j, n in enumerate(self.residuals) if n < MIN_RESIDUALS}

    def state(self) -> dict:
        return {"weights": self.weights, "members": {k: m.state() for k, m in self.members.items()},
                "widths": {str(k): v for k, v in self.widths.items()}, "residuals": self.residuals,
                "validation": self.validation, "inflation": self.inflation}

    @classmethod
    def from_state(cls, state: dict) -> "Combination":
        if "weights" not in state and isinstance(state.get("members"), list):
            raise SeqtoolError("this run was trained by an earlier seqtool, whose forecast chose among the network, ETS and Theta "
                               "(now replaced by a weighted combination with statsforecast's models): train it again to forecast "
                               "from it")
        members = {k: Statistical.from_state(s) for k, s in state["members"].items()}
        return cls({k: [float(w) for w in (v if isinstance(v, list) else [v])] for k, v in state["weights"].items()}, members,
                   {int(k): [float(v) for v in w] for k, w in state["widths"].items()}, [int(n) for n in state["residuals"]],
                   state.get("validation", {}), float(state.get("inflation", 1.0)))


def weighted_mean(tables: dict[str, np.ndarray], weights: dict[str, float | list[float]]) -> np.ndarray:
    """sum_m w_m table_m over tables (origins, steps): a member's weight is one number or one per step
    (past its last step the last holds); renormalised where a member has no forecast (nan)."""
    names = [m for m in weights if m in tables and np.any(np.asarray(weights[m]) > 0)]
    stack = np.stack([tables[m] for m in names])
    steps = stack.shape[-1]

    def per_step(v) -> np.ndarray:
        v = np.atleast_1d(np.asarray(v, dtype=float))
        return np.concatenate([v[:steps], np.full(max(0, steps - len(v)), v[-1])])

    w = np.stack([per_step(weights[m]) for m in names])[:, None, :]
    ok = np.isfinite(stack)
    total = (w * ok).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (np.where(ok, stack, 0.0) * w).sum(axis=0) / total, math.nan)


def estimate_weights(tables: dict[str, np.ndarray], actual: np.ndarray, valid: np.ndarray, shrink: float = SHRINK) -> dict[str, list[float]]:
    """Each member's weight at every step ahead (the columns of `actual`): the least-squares convex
    combination on the validation windows, shrunk toward equal weights (see the module docstring).
    A step no window reaches takes the weights of the step before it."""
    names = [m for m in tables if np.isfinite(tables[m][valid]).all()]
    if not names:
        return {"network": [1.0] * actual.shape[1]}
    weights: dict[str, list[float]] = {m: [] for m in names}
    for j in range(actual.shape[1]):
        rows = valid[:, j]
        if rows.any():
            step = _step_weights(np.stack([tables[m][rows, j] - actual[rows, j] for m in names], axis=1), shrink)
        else:
            step = np.array([weights[m][-1] for m in names]) if j else np.full(len(names), 1 / len(names))
        for m, w in zip(names, step):
            weights[m].append(float(w))
    return weights


def _step_weights(errors: np.ndarray, shrink: float) -> np.ndarray:
    """One step's weights from the members' validation errors (rows: origins, columns: members)."""
    n = errors.shape[0]
    mse = (errors ** 2).mean(axis=0)
    kept = mse <= TRIM * np.median(mse)  # a member far worse than the typical one gets nothing
    raw = np.zeros(len(mse))
    raw[kept] = min_variance_weights(errors[:, kept].T @ errors[:, kept] / n)
    share = n / (n + shrink)
    return np.where(kept, share * raw + (1 - share) / kept.sum(), 0.0)


def min_variance_weights(covariance: np.ndarray) -> np.ndarray:
    """argmin w' S w over w >= 0, sum w = 1: the combination whose error has the least mean square
    given the members' error second moments S (Bates and Granger's optimal weights, kept convex).
    Exact: every support is tried (at most a handful of members), each solved in closed form
    (w proportional to S^-1 1 on it); the best one whose weights are all >= 0 wins."""
    k = len(covariance)
    s = covariance + np.eye(k) * 1e-12 * max(np.trace(covariance), 1e-300)  # identical members: still solvable
    best, weights = math.inf, np.full(k, 1 / k)
    for mask in range(1, 1 << k):
        support = [i for i in range(k) if mask >> i & 1]
        sub = s[np.ix_(support, support)]
        try:
            w = np.linalg.solve(sub, np.ones(len(support)))
        except np.linalg.LinAlgError:
            continue
        if w.sum() <= 0:
            continue
        w /= w.sum()
        if (w < -1e-12).any():
            continue
        value = float(w @ sub @ w)
        if value < best:
            best, weights = value, np.zeros(k)
            weights[support] = np.maximum(w, 0) / np.maximum(w, 0).sum()
    return weights


def validation_mase(tables: dict[str, np.ndarray], actual: np.ndarray, valid: np.ndarray, scale: float) -> dict[str, float]:
    """Mean over steps ahead of each table's validation MAE / scale (for the report)."""
    out = {}
    for name, table in tables.items():
        per_k = [np.abs(table[valid[:, j], j] - actual[valid[:, j], j]).mean() for j in range(actual.shape[1]) if valid[:, j].any()]
        out[name] = float(np.mean(per_k) / scale) if per_k and scale and np.isfinite(per_k).all() else math.nan
    return out


def conformal_widths(residuals: np.ndarray, valid: np.ndarray, level: float) -> list[float]:
    """Half-width per step ahead from the absolute errors (see the module docstring)."""
    widths: list[float] = []
    for j in range(residuals.shape[1]):
        r = np.sort(np.abs(residuals[valid[:, j], j]))
        r = r[np.isfinite(r)]
        n = len(r)
        rank = math.ceil((n + 1) * level) if n >= MIN_RESIDUALS else _upper_rank(n, level)
        if n and rank <= n:
            widths.append(float(r[rank - 1]))
        elif n:
            widths.append(float(r[-1]) * math.sqrt(rank / n))
        else:
            widths.append(widths[-1] * math.sqrt((j + 1) / j) if widths else math.nan)
    return widths


def _upper_rank(n: int, level: float) -> int:
    """The order statistic that bounds the level-quantile from above with 90% confidence."""
    from scipy.stats import binom

    return int(binom.ppf(0.9, n, level)) + 1 if n else 1


def residual_counts(valid: np.ndarray) -> list[int]:
    return [int(valid[:, j].sum()) for j in range(valid.shape[1])]


def in_sample_inflation(residuals: np.ndarray, valid: np.ndarray, in_validation: np.ndarray) -> float:
    """max(1, mean |error| in the validation windows / mean |error| before them), the median over
    steps ahead: errors the members were fitted on understate what unseen data brings."""
    inside = valid & in_validation[:, None]
    before = valid & ~in_validation[:, None]
    ratios = []
    for j in range(residuals.shape[1]):
        if inside[:, j].any() and before[:, j].any():
            a, b = np.abs(residuals[inside[:, j], j]).mean(), np.abs(residuals[before[:, j], j]).mean()
            if b > 0:
                ratios.append(a / b)
    return max(1.0, float(np.median(ratios))) if ratios else 1.0
