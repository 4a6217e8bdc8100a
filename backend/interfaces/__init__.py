from backend.interfaces.broker import IBroker
from backend.interfaces.context_provider import ITradingContextProvider
from backend.interfaces.ohlcv_provider import Candle, IOhlcvProvider, since_last_gap
from backend.interfaces.worker import IWorker, WorkerCategory, WorkerParams, WorkerServices

__all__ = [
    "Candle", "IBroker", "IOhlcvProvider", "ITradingContextProvider", "IWorker", "WorkerCategory", "WorkerParams",
    "WorkerServices", "since_last_gap",
]
