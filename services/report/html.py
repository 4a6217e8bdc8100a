"""report.html: one page comparing the runs of an operation, built from their report files once
they have ended: a summary table, then equity and drawdown charts with the trades marked, then
the round trips' statistics (backend.trade_stats) per run, per asset and per month.

The charts are drawn by matplotlib (a well-kept library, no hand-written chart code) as SVG
inlined in the page, so the file is complete on its own: no script, no font, no stylesheet, no
image to fetch, nothing to run; any browser shows it offline, and it stays a few hundred KB
whatever the runs' length. (plotly was the other candidate: interactive, but it inlines a 4.8 MB
script whose code itself carries external links, and a report does not need to run code.)

Invariant: memory is bounded by the chart's size, not the runs': a curve is read back from
equity.csv row by row and thinned to at most MAX_BUCKETS buckets, each keeping its first and last
rows and its extremes (lowest and highest equity, deepest drawdown), so no peak or trough is lost;
beyond MAX_MARKERS trades a run's markers are thinned evenly, and the legend says so.
"""

import csv
import html
import io
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

MAX_BUCKETS = 1500
MAX_MARKERS = 1000
# matplotlib's default cycle (tab10): the table's swatches and the charts use the same colour per run.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


@dataclass(frozen=True)
class RunFiles:
    """One run in the report: its directory (equity.csv, trades.csv) and its summary.json content."""

    link_id: str
    directory: Path
    summary: dict[str, Any]
    colour: str


def run_colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


@dataclass
class _Curve:
    times: list[datetime]
    equity: list[float]
    drawdown: list[float]


def read_curve(equity_csv: Path, rows: int, buckets: int = MAX_BUCKETS) -> _Curve:
    """The equity curve of equity.csv thinned to at most 5 points per bucket (see the invariant)."""
    size = max(1, math.ceil(rows / buckets))
    curve = _Curve([], [], [])
    bucket: list[tuple[int, datetime, float, float]] = []

    def flush() -> None:
        keep = {bucket[0], bucket[-1], min(bucket, key=lambda row: row[2]), max(bucket, key=lambda row: row[2]),
                max(bucket, key=lambda row: row[3])}
        for _, time, equity, drawdown in sorted(keep):
            curve.times.append(time)
            curve.equity.append(equity)
            curve.drawdown.append(drawdown)
        bucket.clear()

    for index, row in enumerate(_rows(equity_csv)):
        bucket.append((index, datetime.fromisoformat(row["time"]), float(row["equity"]), float(row["drawdown_pct"])))
        if len(bucket) == size:
            flush()
    if bucket:
        flush()
    return curve


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        yield from csv.DictReader(file)


def read_markers(trades_csv: Path, trades: int) -> tuple[dict[str, tuple[list[datetime], list[float]]], int]:
    """Per side, the times and equity of the trades to mark, and every how many trades one is marked."""
    step = max(1, math.ceil(trades / MAX_MARKERS))
    sides: dict[str, tuple[list[datetime], list[float]]] = {"buy": ([], []), "sell": ([], [])}
    for index, row in enumerate(_rows(trades_csv)):
        if index % step == 0 and row["side"] in sides:
            times, equity = sides[row["side"]]
            times.append(datetime.fromisoformat(row["time"]))
            equity.append(float(row["equity_after"]))
    return sides, step


def charts_svg(runs: Sequence[RunFiles]) -> str:
    """Equity (with buys ▲ and sells ▼) above drawdown, every run in its colour, as an <svg> element."""
    # Imported here: only a run with --report pays for matplotlib's import. Its own log (e.g. "created
    # a temporary cache directory" where HOME is read-only) would be a raw line in the JSON stderr.
    logging.getLogger("matplotlib").addHandler(logging.NullHandler())
    logging.getLogger("matplotlib").propagate = False
    from matplotlib import dates, rc_context
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 7.5), layout="constrained")
    equity_axes, drawdown_axes = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    for run in runs:
        rows = run.summary["equity_rows"]
        if not rows:
            continue
        curve = read_curve(run.directory / "equity.csv", rows)
        equity_axes.plot(curve.times, curve.equity, color=run.colour, linewidth=1.4, label=run.link_id)
        drawdown_axes.fill_between(curve.times, [-value for value in curve.drawdown], 0.0, color=run.colour,
                                   alpha=0.25, linewidth=0)
        drawdown_axes.plot(curve.times, [-value for value in curve.drawdown], color=run.colour, linewidth=1.0)
        markers, step = read_markers(run.directory / "trades.csv", run.summary["trades_recorded"])
        for side, marker in (("buy", "^"), ("sell", "v")):
            times, equity = markers[side]
            if times:
                equity_axes.scatter(times, equity, marker=marker, s=30, color=run.colour, edgecolors="black",
                                    linewidths=0.5, zorder=3)
        if step > 1:
            trades = run.summary["trades_recorded"]
            equity_axes.plot([], [], " ", label=f"  (1 in {step} of its {trades} trades marked)")
    equity_axes.scatter([], [], marker="^", color="white", edgecolors="black", label="buy")
    equity_axes.scatter([], [], marker="v", color="white", edgecolors="black", label="sell")
    equity_axes.set_title("Equity (quote currency), trades marked")
    drawdown_axes.set_title("Drawdown from the peak (%)")
    for axes in (equity_axes, drawdown_axes):
        axes.grid(True, color="#dddddd", linewidth=0.6)
    equity_axes.legend(loc="upper left", fontsize=8, framealpha=0.85)
    locator = dates.AutoDateLocator()
    drawdown_axes.xaxis.set_major_locator(locator)
    drawdown_axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    output = io.StringIO()
    # No date or creator metadata and fixed element ids: the same runs give the same file.
    with rc_context({"svg.hashsalt": "opdaemon"}):
        figure.savefig(output, format="svg", metadata={"Date": None, "Creator": None})
    svg = output.getvalue()
    # Inline in HTML: no XML prolog, no external DTD, no RDF metadata naming vocabularies by URL.
    return re.sub(r"<metadata>.*?</metadata>\s*", "", svg[svg.index("<svg"):], count=1, flags=re.DOTALL)


NONE = "&ndash;"  # a figure that is undefined (Sharpe of a flat curve) or absent


def _number(value: Any, pattern: str = ",.2f") -> str:
    return NONE if value is None else f"{value:{pattern}}"


def _period(first: str | None, last: str | None) -> str:
    """`2023-01-01 00:00`, `→ 2023-03-31 23:00` on the next line (UTC), from the summary's ISO times."""
    if first is None or last is None:
        return NONE
    return "<br>→ ".join(datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
                      for moment in (first, last))


def _table(runs: Sequence[RunFiles]) -> str:
    head = ("run", "status", "timeframe", "period (UTC)", "ticks", "trades", "fees", "final equity", "PnL", "PnL %",
            "max drawdown %", "Sharpe", "Sortino", "exposure %")
    rows: list[Sequence[str]] = []
    for run in runs:
        s, m = run.summary, run.summary["metrics"]
        folder = quote(run.directory.name, safe="@")
        files = " ".join(f'<a href="{folder}/{name}">{name}</a>'
                         for name in ("trades.csv", "orders.csv", "equity.csv", "summary.json"))
        error = f'<div class="error">{html.escape(s["error"])}</div>' if s.get("error") else ""
        cells = (
            f'<span class="swatch" style="background:{run.colour}"></span>{html.escape(run.link_id)}'
            f'<div class="files">{files}</div>',
            html.escape(s["status"]) + error, html.escape(s["timeframe"]), _period(s["first_tick"], s["last_tick"]),
            _number(s["ticks_processed"], ","), _number(s["trades"], ","), _number(s["fees_paid"]),
            _number(s["final_equity"]), _number(s["pnl"], "+,.2f"), _number(s["pnl_pct"], "+.2f"),
            _number(m["max_drawdown_pct"], ".2f"), _number(m["sharpe"], ".2f"), _number(m["sortino"], ".2f"),
            _number(m["exposure_pct"], ".1f"),
        )
        rows.append(cells)
    return _html_table(head, rows)


def _asset_table(runs: Sequence[RunFiles]) -> str:
    """Each run's part per asset (backend.portfolio.ledger.AssetFigures, from summary.json), when
    a run has several assets (one asset's figures are its run's)."""
    if all(len(run.summary.get("per_asset", ())) < 2 for run in runs):
        return ""
    head = ("run", "asset", "trades", "fees", "volume", "position", "held value", "PnL")
    rows = [(html.escape(run.link_id), html.escape(f["asset"]), _number(f["trades"], ","), _number(f["fees_paid"]),
             _number(f["volume"]), _number(f["position_qty"], ".8g"), _number(f["position_value"]),
             _number(f["pnl"], "+,.2f"))
            for run in runs for f in run.summary.get("per_asset", ())]
    return f"<h2>By asset</h2>{_html_table(head, rows)}"


def _trade_tables(runs: Sequence[RunFiles]) -> str:
    """The runs' round trips (backend.trade_stats, from summary.json): one row per run, then one
    per run and asset and per run and month."""
    head = ("run", "round trips", "open", "win rate %", "average win", "average loss", "profit factor",
            "expectancy", "best trade", "worst trade", "average holding (h)")
    group_head = ("run", "asset or month", "round trips", "wins", "losses", "win rate %", "PnL")
    rows, group_rows = [], []
    for run in runs:
        t = run.summary["trade_stats"]
        name = html.escape(run.link_id)
        rows.append((name, _number(t["round_trips"], ","), _number(t["open_round_trips"], ","),
                     _number(t["win_rate_pct"], ".1f"), _number(t["average_win"], "+,.2f"),
                     _number(t["average_loss"], "+,.2f"), _number(t["profit_factor"], ".2f"),
                     _number(t["expectancy"], "+,.2f"), _number(t["best_trade"], "+,.2f"),
                     _number(t["worst_trade"], "+,.2f"), _number(t["average_holding_hours"], ",.1f")))
        for key, group in (*t["per_asset"].items(), *t["per_month"].items()):
            group_rows.append((name, html.escape(key), _number(group["round_trips"], ","), _number(group["wins"], ","),
                               _number(group["losses"], ","), _number(group["win_rate_pct"], ".1f"),
                               _number(group["pnl"], "+,.2f")))
    return (f"<h2>Round trips</h2>{_html_table(head, rows)}"
            f"<h2>Round trips by asset and by month</h2>{_html_table(group_head, group_rows)}")


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table of head's columns over rows of cells (already HTML)."""
    header = "".join(f"<th>{html.escape(name)}</th>" for name in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 16px; margin: 20px 0 6px; }
.meta { color: #666; font-size: 13px; margin-bottom: 16px; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 8px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
.files { font-size: 11px; margin-left: 16px; } .files a { color: #555; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }
.error { color: #b00020; white-space: normal; max-width: 360px; }
.notes { color: #555; font-size: 12px; max-width: 1100px; } svg { max-width: 100%; height: auto; }
"""

_NOTES = (
    "PnL and max drawdown as in the run's summary. Sharpe and Sortino: mean per-bar return over its "
    "standard deviation (Sortino: over the downside deviation), annualised by the run's timeframe "
    "(365 days a year), risk-free rate 0; a dash when undefined. Exposure: share of bars that closed "
    "holding a position. Metrics are over the ticks this session processed. A round trip runs from "
    "a position's first fill while flat to the fill that leaves the asset flat again; its PnL is the "
    "cash it brought back, fees included; profit factor: gross profit over gross loss; expectancy: "
    "the mean PnL of a round trip; by month: by the month (UTC) of its last fill; open: positions "
    "still held at the end, not counted. By asset (runs of several assets): its fills, fees and "
    "notional traded, what it holds at its last close, and its PnL (its fills' cash plus the value "
    "held now); the assets' PnLs add up to the run's."
)


def generated_at() -> datetime:
    """Now; or SOURCE_DATE_EPOCH (seconds since 1970, the reproducible-builds.org convention) when it
    holds a whole number, so the same runs give a byte-identical page whenever it is written."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    return datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() else datetime.now(UTC)


def write_report_html(path: Path, title: str, runs: Sequence[RunFiles]) -> None:
    generated = generated_at().strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}: backtest report</title>
<style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<div class="meta">{len(runs)} run(s), report generated {generated}</div>
{_table(runs)}
{_asset_table(runs)}
<p class="notes">{html.escape(_NOTES)}</p>
{charts_svg(runs)}
{_trade_tables(runs)}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
