"""Ingest: the uplink stream from the gateways into the backend."""

from backend.ingest.stats import IngestStats, Rejection
from backend.ingest.worker import IngestWorker, Intake

__all__ = ["IngestStats", "IngestWorker", "Intake", "Rejection"]
