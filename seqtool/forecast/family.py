"""The forecasting families: one series (forecast) and many series with one global model (panel)."""

from seqtool.core.family import EvalFlag, Family

FORECAST = Family(
    name="forecast",
    title="forecasting run",
    task="seqtool.forecast.task:ForecastTask",
    evaluate="seqtool.forecast.saved:eval_command",
    eval_help="k-step errors against the baselines on the held-out tail (or on SERIES)",
    graphs="seqtool.forecast.export:series_graphs",
    engine="seqtool.forecast.export:OnnxSeriesForecaster",
    commands="seqtool.forecast.commands",
    auto_cells=("gru", "mlp"),  # the latent GRU where the series can train it (bench/bench_forecast.py), else the MLPs
)

PANEL = Family(
    name="panel",
    title="panel run",
    task="seqtool.forecast.many:PanelTask",
    evaluate="seqtool.forecast.many:eval_command",
    eval_flags=(
        EvalFlag("--test", str, "panel: score the forecasts of DATA (default: the run's series) on this CSV, as M4 does."),
        EvalFlag("--wide", bool, "panel: the --test file has one row per series (default: the run's layout)."),
        EvalFlag("--out", str, "panel: write test.json and test-scores.csv into this directory (default: the run directory).", aliases=("-o",)),
    ),
    eval_help="sMAPE, MASE and OWA on a test file, as the M4 competition scores",
    graphs="seqtool.forecast.export:graphs",
    engine="seqtool.forecast.export:OnnxForecaster",
    commands="seqtool.forecast.commands",
    claims="seqtool.forecast.panel:claims",
)

#: the tasks `seqtool forecast` trains
FORECASTING = (FORECAST.name, PANEL.name)

FAMILIES = (FORECAST, PANEL)
