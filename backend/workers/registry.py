"""Every worker plugin a blueprint can name, by plugin name."""

from backend.interfaces import IWorker
from backend.workers.context.ema_detector import EmaDetector
from backend.workers.context.fair_value_gap_detector import FairValueGapDetector
from backend.workers.context.market_regime_classifier import MarketRegimeClassifier
from backend.workers.context.volatility_assessor import VolatilityAssessor
from backend.workers.execution.market_order_executor import MarketOrderExecutor
from backend.workers.execution.order_executor import OrderExecutor
from backend.workers.opportunity.dca_schedule_opportunity import DcaScheduleOpportunity
from backend.workers.opportunity.ema_cross_opportunity import EmaCrossOpportunity
from backend.workers.opportunity.fvg_reentry_opportunity import FvgReentryOpportunity
from backend.workers.planning.all_in_planner import AllInPlanner
from backend.workers.planning.dca_planner import DcaPlanner
from backend.workers.planning.position_sizer import PositionSizer
from backend.workers.threat.drawdown_threat import DrawdownThreat
from backend.workers.threat.volatility_threat import VolatilityThreat

PLUGINS: dict[str, type[IWorker]] = {
    worker.plugin_name: worker
    for worker in (
        EmaDetector,
        MarketRegimeClassifier,
        VolatilityAssessor,
        FairValueGapDetector,
        FvgReentryOpportunity,
        DcaScheduleOpportunity,
        EmaCrossOpportunity,
        DrawdownThreat,
        VolatilityThreat,
        PositionSizer,
        DcaPlanner,
        AllInPlanner,
        MarketOrderExecutor,
        OrderExecutor,
    )
}
