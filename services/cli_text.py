"""What the command line prints on stdout once a command is done: the strategy runs' summaries
(with their round-trip statistics), a sweep's best combinations and its walk-forward.

Invariant: text only, from finished results; an undefined figure is a dash, never 0 or NaN.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.trade_stats import TradeStats
    from services.research.sweep import WalkForward


def format_summaries(summaries: Sequence) -> str:
    lines = ["", "Strategy run summaries"]
    for s in summaries:
        a = s.account
        lines += [
            f"== {s.strategy_link} [{s.status.value}]",
            f"   ticks processed {s.ticks_processed:>10}   trades {a.trades:>6}   fees {a.fees_paid:>12,.2f}",
            f"   final equity {a.final_equity:>15,.2f}   PnL {a.pnl:>+13,.2f} ({a.pnl_pct:+.2f}%)"
            f"   max drawdown {a.max_drawdown_pct:.2f}%",
        ]
        for p in a.open_positions:
            lines.append(f"   holds {p.quantity:.8g} {p.asset} @ {p.average_entry_price:,.2f}   now {p.price:,.2f}"
                         f"   unrealised {p.unrealised_pnl:+,.2f} ({p.unrealised_pnl_pct:+.2f}%)"
                         + ("   dust (below the minimum order)" if p.dust else ""))
        if len(a.per_asset) > 1:  # one asset's figures are the totals above
            lines.append(f"   {'by asset':<20} {'trades':>6} {'fees':>10} {'volume':>14} {'held value':>14}"
                         f" {'PnL':>13}")
            lines += [f"   {f.asset:<20} {f.trades:>6} {f.fees_paid:>10,.2f} {f.volume:>14,.2f}"
                      f" {f.position_value:>14,.2f} {f.pnl:>+13,.2f}" for f in a.per_asset]
        lines += format_trade_stats(s.trade_stats)
        if s.orders_rejected or s.orders_unknown or s.orders_skipped:  # worth a look on a live account
            lines.append(f"   orders not filled: rejected {s.orders_rejected}   unknown {s.orders_unknown}"
                         f"   skipped {s.orders_skipped}")
        if s.error:
            lines.append(f"   error: {s.error}")
    return "\n".join(lines)


def format_trade_stats(stats: "TradeStats") -> list[str]:
    """The printed summary's lines on round trips (backend.trade_stats), by asset and by month."""
    lines = [
        f"   round trips {stats.round_trips} (open {stats.open_round_trips})"
        f"   win rate {_figure(stats.win_rate_pct, '.1f', '%')}   profit factor {_figure(stats.profit_factor, '.2f')}"
        f"   expectancy {_figure(stats.expectancy, '+,.2f')}",
    ]
    if not stats.round_trips:
        return lines
    lines += [
        f"   average win {_figure(stats.average_win, '+,.2f')}   average loss {_figure(stats.average_loss, '+,.2f')}"
        f"   best {_figure(stats.best_trade, '+,.2f')}   worst {_figure(stats.worst_trade, '+,.2f')}"
        f"   average holding {_figure(stats.average_holding_hours, ',.1f')} h",
        f"   {'by asset, by month':<20} {'trips':>6} {'win rate':>9} {'PnL':>13}",
    ]
    for name, group in (*stats.per_asset.items(), *stats.per_month.items()):
        lines.append(f"   {name:<20} {group.round_trips:>6} {_figure(group.win_rate_pct, '.1f'):>8}%"
                     f" {group.pnl:>+13,.2f}")
    return lines


def _figure(value: float | None, pattern: str, unit: str = "") -> str:
    """value in pattern's format, with its unit; a dash alone when it is undefined."""
    return "—" if value is None else format(value, pattern) + unit


def format_sweep_table(rows: Sequence, metric: str, shown: int = 10) -> str:
    """The best ranked rows; skipped ones only counted (they are listed in the results)."""
    ranked = [row for row in rows if row.rank is not None]
    skipped = len(rows) - len(ranked)
    lines = ["", f"Best {min(shown, len(ranked))} of {len(ranked)} combinations by {metric}"
                 + (f" ({skipped} skipped by the constraints, listed in the results)" if skipped else "")]
    for row in ranked[:shown]:
        score = row.metrics.get(metric)
        figure = "—" if score is None else f"{score:,.4f}"
        values = ", ".join(f"{name}={value}" for name, value in row.parameters.items())
        lines.append(f"{row.rank:>4}. {row.combination_id}  {metric} {figure:>12}  "
                     f"PnL {row.metrics.get('pnl_pct') or 0:+.2f}%  [{row.status}]  {values}")
    return "\n".join(lines)


def format_walk_forward(walk_forward: "WalkForward") -> str:
    metric, figure = walk_forward.metric, _figure
    lines = ["", f"Walk-forward by {metric}: in sample (train) -> out of sample (test)"]
    for result in walk_forward.windows:
        window, best, test = result.window, result.best, result.test
        lines.append(
            f"  window {window.index + 1}  train {window.train_start:%Y-%m-%d}..{window.train_end:%Y-%m-%d}  "
            f"test ..{window.test_end:%Y-%m-%d}  best {best.combination_id if best else '—'}  "
            f"{metric} {figure(best.metrics.get(metric) if best else None, '.2f')} -> "
            f"{figure(test.metrics.get(metric) if test else None, '.2f')}  "
            f"PnL {figure(best.metrics.get('pnl_pct') if best else None, '+.2f')}% -> "
            f"{figure(test.metrics.get('pnl_pct') if test else None, '+.2f')}%")
    lines.append(f"Stitched out-of-sample PnL: {walk_forward.out_of_sample_pnl_pct():+.2f}%")
    return "\n".join(lines)

