"""A worker without a columnar replay (as a plugin written before it may be): added to a
workforce, it makes the run replay a backtest tick by tick, so the bench can show both paths."""

from backend.interfaces import IWorker, WorkerCategory


class NotColumnar(IWorker):
    category = WorkerCategory.EXECUTION

    def process(self, asset: str) -> None:
        """Nothing: only its lack of `columnar` matters."""
