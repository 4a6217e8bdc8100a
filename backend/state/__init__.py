from backend.state.journal import StoreJournal
from backend.state.store import FillRecord, LinkControls, OrderRecord, OrderState, StateStore

__all__ = ["FillRecord", "LinkControls", "OrderRecord", "OrderState", "StateStore", "StoreJournal"]
