"""The street office's monthly report (统计报表) per community: query (the stores) → monthly (pure figures) → xlsx;
the routes are backend.api.console_reports."""

from backend.reports.monthly import MonthInput, ReportAlarm, monthly_report
from backend.reports.query import month_bounds, month_input

__all__ = ["MonthInput", "ReportAlarm", "month_bounds", "month_input", "monthly_report"]
