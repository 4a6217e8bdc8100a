from backend.config.loader import LoadedOperation, ResolvedLink, load_operation
from backend.config.schema import (
    BacktestEnvironment,
    EnvironmentConfig,
    LiveEnvironment,
    OperationConfig,
    StrategyBlueprint,
    StrategyLink,
    WorkerSpec,
)

__all__ = [
    "BacktestEnvironment",
    "EnvironmentConfig",
    "LiveEnvironment",
    "LoadedOperation",
    "OperationConfig",
    "ResolvedLink",
    "StrategyBlueprint",
    "StrategyLink",
    "WorkerSpec",
    "load_operation",
]
