"""systemd's service notification: READY=1 once a process serves, and a watchdog fed from its event loop.

How this works: systemd (units with `Type=notify`) passes the path of a unix datagram socket in
$NOTIFY_SOCKET (a leading `@` names the abstract namespace); a process tells it its state by sending one
datagram of `KEY=value` lines there (sd_notify(3)). Without $NOTIFY_SOCKET every call here does nothing, so
the same command runs the same way outside systemd.

`Watchdog` feeds `WATCHDOG=1` at half of $WATCHDOG_USEC (what `WatchdogSec=` sets) from a timer on the event
loop, not from a thread: a loop that stalls or dies stops feeding, and systemd restarts the process, which is
exactly the failure a thread would hide.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

__all__ = ["Watchdog", "notify", "watchdog_interval_s"]

log = logging.getLogger(__name__)


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1\\nSTATUS=serving") to systemd; False when not run under it (or the send failed)."""
    path = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify systemd at %s: %s", path, exc)
        return False
    return True


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """How often to feed the watchdog (half its timeout), or None when systemd asked for no watchdog here."""
    env = environ if environ is not None else os.environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.05, int(usec) / 2 / 1_000_000)
    except ValueError:
        return None


class Watchdog:
    """Feeds WATCHDOG=1 every `interval_s` from the running event loop until `stop()`."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.fed = 0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._feed()

    def _feed(self) -> None:
        if notify("WATCHDOG=1"):
            self.fed += 1
        self._handle = asyncio.get_running_loop().call_later(self.interval_s, self._feed)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
