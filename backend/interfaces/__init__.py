from backend.interfaces.broker import IBroker
from backend.interfaces.context_provider import ITradingContextProvider
from backend.interfaces.worker import IWorker, WorkerCategory, WorkerParams, WorkerServices

__all__ = ["IBroker", "ITradingContextProvider", "IWorker", "WorkerCategory", "WorkerParams", "WorkerServices"]
