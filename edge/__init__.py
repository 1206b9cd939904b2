"""The edge agent: a building's devices in, through dialect adapters and a durable outbox, out to the centre.

Rooms: config (the file), adapters/ (one per device dialect), outbox (SQLite store-and-forward), liveness
(who is online), uplink (the central connection), agent (EdgeAgent owning it all), status (what it says
about itself). Time is injected: a broker.clock.Clock. edge/ imports only broker/ and third-party libraries: it keeps
working when the centre is gone.
"""

from edge.agent import EdgeAgent
from edge.config import EdgeConfig, load_config, parse_config
from edge.errors import ConfigError, EdgeError, OutboxError

__all__ = ["ConfigError", "EdgeAgent", "EdgeConfig", "EdgeError", "OutboxError", "load_config", "parse_config"]
