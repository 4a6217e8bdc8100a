from backend.interfaces.broker import IBroker
from backend.interfaces.candle_columns import CandleColumns
from backend.interfaces.context_provider import DtoColumns, DtoRows, ITradingContextProvider
from backend.interfaces.ohlcv_provider import Candle, IOhlcvProvider, since_last_gap
from backend.interfaces.worker import CandleStepWorker, IWorker, WorkerCategory, WorkerParams, WorkerServices

__all__ = [
    "Candle", "CandleColumns", "CandleStepWorker", "DtoColumns", "DtoRows", "IBroker", "IOhlcvProvider",
    "ITradingContextProvider", "IWorker", "WorkerCategory", "WorkerParams", "WorkerServices", "since_last_gap",
]
