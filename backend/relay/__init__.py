"""Scale-out relay (issue 10): ingest workers -> PostgreSQL uplink queue -> one rules leader among the backends.

    ingest worker (N) ──QueueFeed──▶ uplink_queue (PostgreSQL, NOTIFY) ──▶ RulesSeat leader (1 of M backends)
    console / ladder (M) ──QueuedMoves──▶ uplink_queue ──▶ the same leader, in order with the stream

See backend/relay/queue.py (the table and its invariants), feed.py, leader.py, moves.py and docs/scaling.md.
"""

from backend.relay.feed import QueueFeed
from backend.relay.leader import RulesSeat
from backend.relay.moves import QueuedMoves
from backend.relay.queue import LostLeadership, QueueUnavailable, RelayError, UplinkQueue

__all__ = ["LostLeadership", "QueueFeed", "QueueUnavailable", "QueuedMoves", "RelayError", "RulesSeat", "UplinkQueue"]
