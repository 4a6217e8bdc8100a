"""Start-up reconciliation against the fake Kraken: orders the journal does not know, holdings
the exchange account does not have."""

import threading
from datetime import UTC, datetime

import pytest

from backend.dtos import OrderDTO, OrderSide
from backend.portfolio import Ledger, StrategyAccount
from backend.venues.kraken.execution import KrakenOrderGateway, link_tag
from services.reconciliation import reconcile
from tests.fake_kraken import FakeKraken
from tests.live_support import fast_client, live_env

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def accounts_on_one_key(fake: FakeKraken, links: list[str]) -> dict[str, StrategyAccount]:
    client = fast_client(live_env(fake, mode="live", allow_live_orders=True), with_credentials=True)
    client.load_markets()
    return {
        link: StrategyAccount(Ledger(1_000), KrakenOrderGateway(client, link_tag(link), threading.Event(),
                                                                poll_seconds=0.01))
        for link in links
    }


def buy(quantity: float) -> OrderDTO:
    return OrderDTO(asset="BTC/USD", side=OrderSide.BUY, quantity=quantity, reference_price=50_000.0, reason="t")


def test_an_open_order_the_journal_does_not_know_pauses_its_link_only(fake, credentials, logs):
    accounts = accounts_on_one_key(fake, ["a@live", "b@live"])
    accounts["a@live"].submit(buy(0.001), NOW)
    (placed,) = fake.orders_of(link_tag("a@live"))
    placed["status"] = "open"  # e.g. placed by an earlier run whose journal was lost

    reconcile(accounts, {link: "USD" for link in accounts})

    (mismatch,) = [e for e in logs if e["event"] == "reconciliation_mismatch"]
    assert (mismatch["strategy_link"], mismatch["open_orders"]) == ("a@live", [placed["cl_ord_id"]])
    assert accounts["a@live"].paused and accounts["a@live"].submit(buy(0.001), NOW) is None
    assert accounts["b@live"].paused is None and accounts["b@live"].submit(buy(0.001), NOW) is not None
    assert len(fake.orders) == 2


def test_holdings_beyond_the_exchange_balance_pause_the_links_holding_them(fake, credentials, logs):
    accounts = accounts_on_one_key(fake, ["a@live", "b@live"])
    for account in accounts.values():
        account.submit(buy(0.001), NOW)
    fake.balances["XXBT"] = 0.0015  # someone sold part of it by hand

    reconcile(accounts, {link: "USD" for link in accounts})

    (mismatch,) = [e for e in logs if e["event"] == "reconciliation_mismatch"]
    assert mismatch["currency"] == "BTC" and mismatch["exchange_balance"] == pytest.approx(0.0015)
    assert mismatch["strategies_hold"] == {"a@live": pytest.approx(0.001), "b@live": pytest.approx(0.001)}
    assert all(account.paused for account in accounts.values())


def test_a_matching_account_is_not_paused(fake, credentials, logs):
    accounts = accounts_on_one_key(fake, ["a@live"])
    accounts["a@live"].submit(buy(0.001), NOW)
    reconcile(accounts, {link: "USD" for link in accounts})
    assert accounts["a@live"].paused is None
    assert sorted(e["currency"] for e in logs if e["event"] == "reconciled") == ["BTC", "USD"]
    assert not [e for e in logs if e["event"] == "reconciliation_mismatch"]


def test_budgets_beyond_the_exchange_cash_pause_the_links(fake, credentials, logs):
    fake.balances["ZUSD"] = 1_500.0  # two links with a 1,000 USD budget each
    accounts = accounts_on_one_key(fake, ["a@live", "b@live"])

    reconcile(accounts, {link: "USD" for link in accounts})

    (mismatch,) = [e for e in logs if e["event"] == "reconciliation_mismatch"]
    assert (mismatch["currency"], mismatch["exchange_balance"]) == ("USD", 1_500.0)
    assert mismatch["strategies_hold"] == {"a@live": 1_000.0, "b@live": 1_000.0}
    assert all(account.paused for account in accounts.values())
