"""What operators run the system with: Prometheus metrics, readiness checks, systemd notification, JSON logs,
the HTTP security headers and the offline API documentation (docs/operations.md).

Rooms: metrics (the Prometheus registry of a process, read from the stats the components already keep),
checks (the readiness checks of a backend or an ingest worker), systemd (sd_notify: READY=1 and the
watchdog), logs (plain or JSON lines, times in UTC with offset), web (security headers, local Swagger UI
and ReDoc).
"""
