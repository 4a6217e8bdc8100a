from backend.state.store import FillRecord, OrderRecord, OrderState, StateStore

__all__ = ["FillRecord", "OrderRecord", "OrderState", "StateStore"]
