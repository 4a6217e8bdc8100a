"""A sweep's and a walk-forward's result files: the ranked table as CSV and JSON and one HTML page
(the table, a heatmap of the metric for a two-parameter grid, the walk-forward's in-sample vs
out-of-sample table and its stitched out-of-sample equity).

Invariants: the CSV, the JSON and the page show the same rows in the same order; results cut
short by a stop say so (`partial` in the JSON, a banner on the page); the page is one
self-contained file (inline SVG and CSS, no script, nothing fetched), readable offline; every
value written comes from the rows, escaped.
"""

import csv
import json
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from services.research.sweep import METRICS, Coverage, Row, WalkForward
from services.research.sweep_file import LoadedSweep

RESULTS_CSV, RESULTS_JSON, RESULTS_HTML = "results.csv", "results.json", "results.html"
WALK_FORWARD_CSV, WALK_FORWARD_JSON = "walk_forward.csv", "walk_forward.json"


def row_fields(row: Row) -> dict[str, Any]:
    return {"rank": row.rank, "combination_id": row.combination_id, **row.parameters, "status": row.status,
            **{metric: row.metrics.get(metric) for metric in METRICS}, "error": row.error}


def write_results(directory: Path, sweep: LoadedSweep, rows: Sequence[Row], coverage: Coverage,
                  walk_forward: WalkForward | None = None) -> Path:
    """Write every file into directory (created); the HTML page's path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = sweep.config
    _write_csv(directory / RESULTS_CSV, [row_fields(row) for row in rows])
    document: dict[str, Any] = {
        "sweep": config.display_name, "file": str(sweep.path), "blueprint": config.blueprint,
        "environments": config.environments, "metric": config.metric,
        "order": "ascending" if config.lower_is_better else "descending", "search": config.search.model_dump(),
        "constraints": config.constraints, **coverage_fields(coverage),
        "rows": [{**row_fields(row), "per_environment": _without_curves(row.per_environment)} for row in rows],
    }
    (directory / RESULTS_JSON).write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    if walk_forward is not None:
        window_rows = walk_forward_rows(walk_forward)
        _write_csv(directory / WALK_FORWARD_CSV, window_rows)
        (directory / WALK_FORWARD_JSON).write_text(json.dumps({
            "metric": walk_forward.metric, **coverage_fields(coverage), "windows": window_rows,
            "out_of_sample_pnl_pct": walk_forward.out_of_sample_pnl_pct(),
            "stitched_equity": walk_forward.stitched_equity(),
        }, indent=2, default=str) + "\n", encoding="utf-8")
    page = directory / RESULTS_HTML
    page.write_text(_page(sweep, rows, coverage, walk_forward), encoding="utf-8")
    return page


def coverage_fields(coverage: Coverage) -> dict[str, Any]:
    fields: dict[str, Any] = {"partial": coverage.partial, "combinations_finished": coverage.finished,
                              "combinations_planned": coverage.planned, "combinations_skipped": coverage.skipped}
    if coverage.windows_planned:
        fields |= {"windows_finished": coverage.windows_finished, "windows_planned": coverage.windows_planned}
    return fields


def partial_banner(coverage: Coverage) -> str:
    """One line saying the results are partial and how much ran ('' when they are complete)."""
    return f"Partial results: the sweep was stopped; {coverage.describe()}" if coverage.partial else ""


def walk_forward_rows(walk_forward: WalkForward) -> list[dict[str, Any]]:
    metric = walk_forward.metric
    rows = []
    for result in walk_forward.windows:
        window, best, test = result.window, result.best, result.test
        rows.append({
            "window": window.index + 1,
            "train_start": window.train_start.isoformat(), "train_end": window.train_end.isoformat(),
            "test_start": window.test_start.isoformat(), "test_end": window.test_end.isoformat(),
            "best": best.combination_id if best else None,
            **({f"best.{k}": v for k, v in best.parameters.items()} if best else {}),
            f"in_sample_{metric}": best.metrics.get(metric) if best else None,
            f"out_of_sample_{metric}": test.metrics.get(metric) if test else None,
            "in_sample_pnl_pct": best.metrics.get("pnl_pct") if best else None,
            "out_of_sample_pnl_pct": test.metrics.get("pnl_pct") if test else None,
            "out_of_sample_status": test.status if test else "not run",
        })
    return rows


def _without_curves(per_environment: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {env: {k: v for k, v in figures.items() if k != "daily_equity"} for env, figures in per_environment.items()}


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# --- the page ---------------------------------------------------------------------------------

STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:12px 0;display:block;overflow-x:auto;max-width:100%}
td{white-space:nowrap}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td.text{text-align:left}
.failed td{color:#a00} .skipped td{color:#888}
.partial{background:#fff3cd;border:1px solid #e0b000;padding:8px 12px;font-weight:bold}
"""


def _format(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str) and value.endswith("T00:00:00+00:00"):  # a window's date: the day is enough
        return value.removesuffix("T00:00:00+00:00")
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.2f}"
    return str(value)


def _table(rows: Sequence[dict[str, Any]], css_classes: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p>No rows.</p>"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{css_classes[index]}"' if css_classes else ""
        cells = "".join(
            f'<td class="text">{escape(_format(row.get(c)))}</td>' if isinstance(row.get(c), str)
            else f"<td>{escape(_format(row.get(c)))}</td>" for c in columns
        )
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _page(sweep: LoadedSweep, rows: Sequence[Row], coverage: Coverage, walk_forward: WalkForward | None) -> str:
    config = sweep.config
    order = "lowest" if config.lower_is_better else "highest"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{escape(config.display_name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(config.display_name)}</h1>",
        f"<p>Blueprint <b>{escape(config.blueprint)}</b> on {escape(', '.join(config.environments))}; "
        f"search {escape(config.search.method)}; ranked by <b>{escape(config.metric)}</b> ({order} first).</p>",
    ]
    if coverage.partial:
        parts.append(f'<p class="partial">{escape(partial_banner(coverage))}</p>')
    if config.constraints:
        parts.append(f"<p>Constraints: {escape('; '.join(config.constraints))} "
                     f"({coverage.skipped} combination(s) skipped, listed last).</p>")
    if walk_forward is not None:
        parts += [
            "<h2>Walk-forward: in-sample vs out-of-sample</h2>",
            f"<p>Stitched out-of-sample PnL: <b>{walk_forward.out_of_sample_pnl_pct():+.2f}%</b></p>",
            _table(walk_forward_rows(walk_forward)),
            "<h3>Stitched out-of-sample equity</h3>", _line_chart(walk_forward.stitched_equity()),
        ]
    if len(sweep.space.values) == 2:
        parts += [f"<h2>{escape(config.metric)} by parameters</h2>", _heatmap(sweep, rows)]
    title = "Results of the full range" if walk_forward is not None else "Results"
    css = [{"completed": "", "skipped": "skipped"}.get(row.status, "failed") for row in rows]
    parts += [f"<h2>{title}</h2>", _table([row_fields(row) for row in rows], css), "</body></html>"]
    return "\n".join(parts)


def _heatmap(sweep: LoadedSweep, rows: Sequence[Row]) -> str:
    """Cells of the first parameter (rows) by the second (columns), coloured from worst (red) to best (green)."""
    (first, first_values), (second, second_values) = sweep.space.values.items()
    metric = sweep.config.metric
    scores = {(row.combination[first], row.combination[second]): row.score(metric) for row in rows}
    known = [score for score in scores.values() if score is not None]
    low, high = (min(known), max(known)) if known else (0.0, 0.0)
    cell, left, top = 64, 140, 64
    width = max(left + cell * len(second_values), 16 + 8 * len(f"{first[0]}.{first[1]}{second[0]}.{second[1]}"))
    height = top + cell * len(first_values)
    # Axis titles on lines of their own: the columns' (→) first, then the rows' (↓), then the column values.
    shapes = [f'<text x="{left}" y="16">{escape(f"{second[0]}.{second[1]}")} →</text>',
              f'<text x="4" y="36">{escape(f"{first[0]}.{first[1]}")} ↓</text>']
    for j, value in enumerate(second_values):
        shapes.append(f'<text x="{left + j * cell + cell / 2}" y="{top - 8}" text-anchor="middle">'
                      f'{escape(_format(value))}</text>')
    for i, row_value in enumerate(first_values):
        y = top + i * cell
        shapes.append(f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end">'
                      f'{escape(_format(row_value))}</text>')
        for j, column_value in enumerate(second_values):
            score = scores.get((row_value, column_value))
            colour = "#ddd" if score is None else _colour(score, low, high, sweep.config.lower_is_better)
            shapes.append(f'<rect x="{left + j * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                          f'fill="{colour}"><title>{escape(_format(score))}</title></rect>')
            shapes.append(f'<text x="{left + j * cell + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" '
                          f'font-size="11">{escape(_format(score))}</text>')
    return f'<svg width="{width}" height="{height}">{"".join(shapes)}</svg>'


def _colour(score: float, low: float, high: float, lower_is_better: bool) -> str:
    share = 0.5 if math.isclose(high, low) else (score - low) / (high - low)
    if lower_is_better:
        share = 1 - share
    red, green = int(230 - 130 * share), int(100 + 120 * share)
    return f"rgb({red},{green},110)"


def _line_chart(points: Sequence[tuple[str, float]]) -> str:
    if len(points) < 2:
        return "<p>Not enough out-of-sample points to draw.</p>"
    width, height, pad = 800, 240, 40
    values = [value for _, value in points]
    low, high = min(values), max(values)
    span = high - low or 1.0
    x_step = (width - 2 * pad) / (len(points) - 1)
    coordinates = " ".join(f"{pad + i * x_step:.1f},{height - pad - (v - low) / span * (height - 2 * pad):.1f}"
                           for i, v in enumerate(values))
    return (f'<svg width="{width}" height="{height}">'
            f'<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="{coordinates}"/>'
            f'<text x="{pad}" y="{pad - 10}">{escape(_format(high))}</text>'
            f'<text x="{pad}" y="{height - 10}">{escape(_format(low))} · {escape(points[0][0])} … '
            f'{escape(points[-1][0])}</text></svg>')
