from backend.market_data.raw_tick import RawTick
from backend.market_data.tick_source import TickSource

__all__ = ["RawTick", "TickSource"]
