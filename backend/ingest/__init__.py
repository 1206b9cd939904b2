"""Ingest: the uplink stream from the gateways into the backend."""

from backend.ingest.stats import IngestStats, Rejection
from backend.ingest.worker import IngestWorker, UplinkSink

__all__ = ["IngestStats", "IngestWorker", "Rejection", "UplinkSink"]
