"""Hazard work orders (隐患整改): the store, the service, the overdue watch and the photos (docs/workorders.md).

The rules (one transition table, due times, overdue and escalation from (order, now)) are alerting.workorders.
"""

from backend.workorders.photos import PhotoFolder, sniff
from backend.workorders.service import (
    NoSuchOrder,
    OrderConflict,
    OrderRefused,
    OverdueWatch,
    PhotoRefused,
    WorkOrder,
    WorkOrderService,
    WorkOrderServiceError,
    WorkOrderSettings,
    running_work_orders,
)

__all__ = ["NoSuchOrder", "OrderConflict", "OrderRefused", "OverdueWatch", "PhotoFolder", "PhotoRefused", "WorkOrder", "WorkOrderService",
           "WorkOrderServiceError", "WorkOrderSettings", "running_work_orders", "sniff"]
