from backend.state.journal import StoreJournal
from backend.state.store import FillRecord, OrderRecord, OrderState, StateStore

__all__ = ["FillRecord", "OrderRecord", "OrderState", "StateStore", "StoreJournal"]
