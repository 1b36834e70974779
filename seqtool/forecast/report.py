"""How forecasting results are shown: the metrics table (Markdown and plain text), the PNG with
the series and its forecasts, and the CSV of values past the end."""

from __future__ import annotations

from pathlib import Path

import torch

from seqtool.core.report import markdown_table, pyplot, save_figure

COLUMNS = ["k", "method", "n", "mae", "rmse", "smape", "mase"]


def _rows(results: dict) -> list[dict]:
    multi = [{"k": f"multi (1..{results['n_test']})", **row} for row in results["multi_step"]]
    return results["k_step"] + multi


def forecast_markdown(results: dict) -> str:
    r = results
    chosen = r.get("chosen_by", {})
    members = r.get("members", 1)
    levels = sorted({int(key.split("-")[1]) for row in r["k_step"] for key in row if key.startswith("coverage-")})
    head = [
        "## Forecast evaluation",
        "",
        f"- series: {r['series']}, {r['values']} values; training part: the first {r['n_train']} (of which the last {r['n_val']} "
        f"validate), test part: the last {r['n_test']} (used only here)",
        f"- seasonal period {r['season']} (from {chosen.get('season', '--season')}); MASE scale: in-sample seasonal-naive MAE "
        f"{r['mase_scale']:.4g}",
        f"- transform: {r['transform']} (from {chosen.get('transform', '--transform')}); differences at lags "
        f"{', '.join(map(str, r['difference'])) or 'none'} (from {chosen.get('difference', '--difference')}); then standardised",
        f"- network: {r['model']}{f' x {members} side by side (their mean)' if members > 1 else ''} reading {r['tau']} values; "
        f"model = {r['combination']} (weights per step ahead from the validation windows' errors, shrunk toward equal; "
        "validation MASE: " + ", ".join(f"{name} {value:.3f}" for name, value in r.get("validation_mase", {}).items()) + ")",
        "- baselines on the same points: naive (last value), seasonal naive, drift, "
        + ", ".join(r.get("statistical", {}).values()) + " (statsforecast; chosen and fitted on the training part, the model "
        "fixed across origins), and ets+arima+theta, their plain mean",
        *([f"- --fill filled {r['filled']} value(s), {r.get('gaps_filled', 0)} of them missing time steps"] if r.get("filled") else []),
        *([f"- time column: {chosen['irregular_steps']} irregular step(s) (first: {chosen['first_irregular_step']}); the rows are "
           "taken as consecutive observations"] if chosen.get("irregular_steps") else []),
        "- k: prediction for each test value made k steps earlier; multi: one recursive forecast from the end of the training part",
        *([f"- left out: k = {', '.join(map(str, r['skipped_k']))} (no test value has that much history)"] if r.get("skipped_k") else []),
        "- lowest MASE: " + "; ".join(f"k={k}: {method}" for k, method in r.get("winners", {}).items()),
        "",
        markdown_table(_rows(r), COLUMNS),
    ]
    if levels:
        columns = ["k", "n"] + [c for level in levels for c in (f"coverage-{level}", f"msis-{level}")]
        calibration = r.get("calibration", {})
        counts = calibration.get("residuals", [])
        few = calibration.get("few_residuals", {})
        head += ["", "## Prediction intervals of model", "",
                 f"Conformal, per step ahead, from the combination's errors at rolling origins over the training part "
                 f"({min(counts, default=0)} to {max(counts, default=0)} errors per step; those before the validation windows scaled "
                 f"by {calibration.get('inflation', 1.0):.2f} for being in-sample)."
                 + (f" Fewer than 30 errors at k = {', '.join(map(str, few))}: those widths use the 90% upper confidence bound of "
                    "the quantile (wider)." if few else ""), "",
                 markdown_table([row for row in r["k_step"] if row["method"] == "model"], columns)]
    if r.get("horizon"):
        columns = list(r["horizon"][0])
        head += ["", f"## Forecast past the end ({len(r['horizon'])} values)", "", markdown_table(r["horizon"], columns)]
    return "\n".join(head)


def text_table(results: dict) -> str:
    """The metrics table for a terminal: fixed-width columns."""
    rows = _rows(results)
    cells = [[str(c) for c in COLUMNS]] + [[_fmt(row[c]) for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.rjust(w) if i != 1 else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))) for line in cells)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4g}"
    return str(value)


def horizon_csv(horizon: list[dict]) -> str:
    """time,forecast[,lo-L,hi-L ...] with one row per step past the end."""
    columns = list(horizon[0]) if horizon else ["time", "forecast"]
    return ",".join(columns) + "\n" + "".join(
        ",".join(str(row[c]) if c == "time" else f"{row[c]:.10g}" for c in columns) + "\n" for row in horizon)


def forecast_plot(path: Path, series, n_train: int, curves: dict, horizon: list[dict] | None) -> None:
    """Top: the series, one-step and recursive multi-step forecasts (and the forecast past the end);
    bottom: the k-step-ahead predictions for every k over the test part."""
    plt = pyplot()
    n = len(series)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    index = torch.arange(n)
    for ax in (top, bottom):
        ax.plot(index, series.values, color="0.2", lw=0.7, alpha=0.6, zorder=5, label=series.name)
        ax.axvline(n_train - 0.5, color="0.3", ls=":", lw=1)
        ax.grid(alpha=0.3)
    ks = sorted(curves["k"])
    if 1 in curves["k"]:
        targets, pred = curves["k"][1]
        top.plot(targets, pred, color="tab:blue", lw=1, label="one-step")
    top.plot(range(n_train, n), curves["multi"], color="tab:red", ls="--", lw=1.2, label="multi-step (recursive)")
    if horizon:
        ahead = range(n, n + len(horizon))
        top.plot(ahead, [h["forecast"] for h in horizon], color="tab:green", lw=1.2, label="forecast past the end")
        for level, (low, high) in sorted(curves.get("bands", {}).items(), reverse=True):
            top.fill_between(ahead, low[0], high[0], color="tab:green", alpha=0.15, lw=0, label=f"{level}% interval")
    top.set_title("one-step and multi-step forecasts (dotted line: end of training part)")
    top.legend(fontsize=8)
    for k in ks:
        targets, pred = curves["k"][k]
        bottom.plot(targets, pred, lw=1, label=f"{k}-step")
    bottom.set_title("k-step-ahead predictions")
    bottom.legend(fontsize=8)
    ticks = [int(i) for i in torch.linspace(0, n - 1, 6).round()]
    bottom.set_xticks(ticks, [series.times[i] for i in ticks])
    save_figure(fig, Path(path))
    plt.close(fig)
