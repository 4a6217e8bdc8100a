"""Start-up reconciliation of the live accounts with the exchange (mode: live links only).

Invariants: every journaled order whose outcome was unknown is looked up and booked (or left
unknown) before any tick; a link with an order open on the exchange that its journal does not
know, and the links that together hold more of a currency than their exchange account does, are
paused (no new buys; exits stay allowed), each case logged as one `reconciliation_mismatch` line
naming the links and the orders or amounts; the other links trade. Cash counts as a holding of the
quote currency, so links whose budgets add up to more than the exchange account holds are caught.
A link is held to what it holds at least: its open buys may have spent their reserved cash and its
open sells (limits, protective stops and take-profits) sold their base while the daemon was down;
those fills are booked on the next candle, not reported as a mismatch now.
"""

from collections import defaultdict

import structlog

from backend.dtos import OrderSide
from backend.portfolio import StrategyAccount

log = structlog.get_logger(__name__)

# Kraken reports a balance to its asset's decimals (USD, EUR: 4; ccxt truncates to them) while the
# accounts book fills at full precision: a difference below the coarsest of those is rounding.
TOLERANCE = 1e-4


def reconcile(accounts: dict[str, StrategyAccount], quote_currencies: dict[str, str]) -> None:
    """accounts: link id -> account, of links whose orders are real; quote_currencies: link id ->
    the currency its cash is in (its `starting_capital` is a budget the exchange account must hold)."""
    held: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)  # (venue account, currency) -> link -> qty
    venue_holdings: dict[int, dict[str, float]] = {}
    for link, account in accounts.items():
        if account.unsettled_orders:
            log.info("settling_unknown_orders", strategy_link=link,
                     orders=[request.client_order_id for request in account.unsettled_orders])
            account.settle()
        holdings = account.holdings()
        if holdings is None:
            continue
        journaled = {order.client_order_id for order in account.open_orders()}  # resting or unsettled
        unknown_open = [order for order in account.venue_open_orders() or [] if order not in journaled]
        if unknown_open:
            reason = f"orders open on the exchange that its journal does not know: {', '.join(unknown_open)}"
            log.error("reconciliation_mismatch", strategy_link=link, open_orders=unknown_open,
                      action="this link takes no new buys until it is resolved")
            account.paused = reason
        venue = id(account.venue_account)
        venue_holdings[venue] = holdings
        for asset, position in account.ledger.positions.items():
            held[(venue, asset.split("/")[0])][link] = max(position.qty - _open_sells(account, asset), 0.0)
        held[(venue, quote_currencies[link])][link] = account.ledger.cash - account.snapshot().reserved_cash
    for (venue, currency), by_link in held.items():
        total, available = sum(by_link.values()), venue_holdings[venue].get(currency, 0.0)
        if total > available + TOLERANCE:
            reason = f"the strategies hold {total:g} {currency} together, the exchange account {available:g}"
            log.error("reconciliation_mismatch", currency=currency, exchange_balance=available,
                      strategies_hold=by_link, action="these links take no new buys until it is resolved")
            for link in by_link:
                accounts[link].paused = reason
        else:
            log.info("reconciled", currency=currency, exchange_balance=available, strategies_hold=by_link)


def _open_sells(account: StrategyAccount, asset: str) -> float:
    """What the link's open sells of asset may still sell (a stop and a take-profit both cover the position)."""
    return sum(order.quantity - order.filled_quantity for order in account.open_orders(asset)
               if order.side is OrderSide.SELL)
