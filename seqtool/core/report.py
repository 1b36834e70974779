"""Run reports: report.json for machines, report.md and PNG plots for people."""

from __future__ import annotations

import math
from pathlib import Path

from seqtool.core.run import RunDir, atomic_write_bytes


def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def save_figure(fig, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(rows: list[dict], path: Path, monitor: str) -> None:
    """Training and held-out curves per epoch. Perplexities share one log axis; a held-out metric
    of another kind (BLEU, MSE) gets its own axis on the right."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    epochs = [r["epoch"] for r in rows]
    same_scale = monitor.endswith("ppl") and all("train_ppl" in r for r in rows)
    train_key = "train_ppl" if same_scale else "train_loss"
    ax.plot(epochs, [r[train_key] for r in rows], label=train_key.replace("_", " "), color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity" if same_scale else "training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    lines = ax.get_lines()
    if rows and monitor in rows[0]:
        target = ax if same_scale else ax.twinx()
        target.plot(epochs, [r[monitor] for r in rows], label=monitor.replace("_", " "), color="tab:orange")
        if not same_scale:
            target.set_ylabel(monitor.replace("_", " "))
        lines = ax.get_lines() + (target.get_lines() if target is not ax else [])
    ax.legend(lines, [line.get_label() for line in lines])
    save_figure(fig, path)
    plt.close(fig)


def done_line(summary: dict, monitor: str) -> str:
    """What `train` says at the end: epochs, time, the best held-out score."""
    best = summary["best"].get(monitor)
    if best is None:
        return "done"
    return f"done: {summary['epochs']} epochs, {summary['wall_seconds']:.0f} s; best {monitor} {best:.4f} (epoch {summary['best']['epoch']})"


def write_run_report(run: RunDir, summary: dict, monitor: str, sections: list[str]) -> None:
    rows = run.read_metrics()
    run.write_json("report.json", summary)
    if rows:
        learning_curve(rows, run.path / "learning_curve.png", monitor)
    final, best = summary.get("final", {}), summary.get("best", {})
    unit_key = next((k for k in summary if k.endswith("_per_s")), None)
    lines = [
        f"# Run report: {run.path.name}",
        "",
        f"- task: {summary['task']}",
        f"- final {monitor}: {_fmt(final.get(monitor, float('nan')))} (epoch {final.get('epoch', '-')})",
        f"- best {monitor}: {_fmt(best.get(monitor) if best.get(monitor) is not None else float('nan'))} (epoch {best.get('epoch', '-')}; "
        "the validation split: it chose this checkpoint)",
        *(["- test split (never used to choose): " + ", ".join(f"{k} {_fmt(v)}" for k, v in summary["test"].items() if k != "epoch")]
          if summary.get("test") else []),
        f"- parameters: {summary['parameters']:,}",
        f"- wall time: {summary['wall_seconds']:.1f} s; throughput: {_fmt(summary.get(unit_key, 0.0))} {unit_key or ''}",
        f"- device: {summary['device']}"
        + (f" x {summary['processes']} processes (DDP)" if summary.get("processes", 1) > 1 else "")
        + (f", {summary['precision']} autocast" if summary.get("precision", "fp32") != "fp32" else ""),
        f"- command: `{summary['command']}`",
        "",
        "## Learning curve",
        "",
        "![learning curve](learning_curve.png)" if rows else "(no completed epoch)",
        "",
    ]
    if rows:
        columns = [c for c in ("epoch", "train_loss", "train_ppl", monitor, "grad_norm", "clip_frac", "lr") if c in rows[0]]
        lines += [markdown_table(rows[-20:], columns), ""]
    for section in sections:
        lines += [section, ""]
    run.write_text("report.md", "\n".join(lines))
