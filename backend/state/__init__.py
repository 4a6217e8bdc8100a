from backend.state.journal import StoreJournal
from backend.state.store import FillRecord, LinkControls, OrderEvent, OrderRecord, StateStore

__all__ = ["FillRecord", "LinkControls", "OrderEvent", "OrderRecord", "StateStore", "StoreJournal"]
