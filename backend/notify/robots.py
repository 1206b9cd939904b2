"""Group robots: WeCom (企业微信) and DingTalk (钉钉), one robot per community, one post per alarm.

How this works: a ladder rung pages several people at once (a micro fire station is six to eight), and the
dispatcher hands the channel one `Message` per person. The robot channel gathers the messages of one page
(same robot, alarm, rung, reason and drill mark) for `gather_s`, then makes ONE post that names everyone paged:

- WeCom: `{"msgtype": "text", "text": {"content", "mentioned_mobile_list"}}` to
  `<wecom_url>?key=<the community's key>`;
- DingTalk: `{"msgtype": "text", "text": {"content"}, "at": {"atMobiles", "isAtAll": false}}` to
  `<dingtalk_url>?access_token=<token>`, each `@<mobile>` also written into the content (DingTalk highlights
  and notifies only the mobiles that appear there), and in signed mode `&timestamp=<ms>&sign=<s>` where
  s = urlencode(base64(HMAC-SHA256(key=secret, "<timestamp>\\n<secret>"))).

Every joined `send` returns the post's reference or raises the same `DeliveryFailed`. A post that went out is
remembered by each message's key, so a retry or a redelivery of a message already posted returns the old
reference instead of posting twice (the robots have no idempotency key of their own).

Limits: each robot may post 20 times a minute (DingTalk throttles an offender for 10 minutes). A post waits
for a slot in its robot's sliding window (`RobotThrottle`); waiting posts leave by priority, a real life-safety
page first, then by severity, then in order of arrival, so a fire page leaves before queued minor posts (and a
robot has one post on the wire at a time, so they arrive in that order). The
platforms' own rate-limit answers (WeCom errcode 45009, DingTalk 130101 / "send too fast", HTTP 429) shut the
robot for a window and are transient (the dispatcher retries, the post waits for the robot's next slot), as are
server errors (HTTP 5xx, errcode -1 system busy, timeouts). Anything else (a wrong key, a bad signature) is
permanent. The one-tap link never goes into a group (issue 22): the text is `without_link`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import hmac
import itertools
import urllib.parse
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from backend.notify.channel import DeliveryFailed, Message
from backend.notify.templates import without_link
from broker.clock import Clock

__all__ = ["ROBOT_KINDS", "Robot", "RobotChannel", "RobotThrottle", "dingtalk_sign", "post_priority", "robot_body"]

ROBOT_KINDS = ("wecom", "dingtalk")
DEFAULT_COMMUNITY = "*"  # the robot of a deployment that has one group for every community
_RATE_LIMITED_ERRCODES = {45009, 130101, 130102}  # WeCom: api freq out of limit; DingTalk: send too fast (per minute, per hour)
_BUSY_ERRCODES = {-1}  # "system busy, try again"
_SEVERITY_RANK = {"critical": 1, "major": 2, "minor": 3, "info": 4}
_REMEMBERED_POSTS = 10_000  # message keys already posted, so a retry does not post twice


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signed mode: base64 of HMAC-SHA256(secret, "<timestamp>\\n<secret>"), URL-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode("ascii"))


def post_priority(message: Message) -> int:
    """Smaller leaves first: a real life-safety page, then by severity; a drill after every real post."""
    base = 0 if message.life_safety and not message.drill else _SEVERITY_RANK.get(message.severity, 4)
    return base + (10 if message.drill else 0)


def robot_body(kind: str, messages: list[Message]) -> dict[str, Any]:
    """One post for the people of one page: the notice once, then who was paged (names; mentions by mobile)."""
    first = messages[0]
    phones = list(dict.fromkeys(m.contact.phone for m in messages if m.contact.phone))
    names = "、".join(dict.fromkeys(m.contact.name for m in messages))
    content = f"{without_link(first.text)}\n已通知：{names}"
    if kind == "wecom":
        return {"msgtype": "text", "text": {"content": content, "mentioned_mobile_list": phones}}
    if kind == "dingtalk":
        mentions = " ".join(f"@{p}" for p in phones)
        return {"msgtype": "text", "text": {"content": f"{content}\n{mentions}" if mentions else content},
                "at": {"atMobiles": phones, "isAtAll": False}}
    raise ValueError(f"unknown robot kind {kind!r}; use one of {ROBOT_KINDS}")


@dataclass(frozen=True, slots=True)
class Robot:
    """One group robot: WeCom's webhook key, or DingTalk's access token and (signed mode) secret."""

    community: str
    key: str
    secret: str | None = None

    def __repr__(self) -> str:  # never print a key
        return f"Robot({self.community!r}, signed={self.secret is not None})"


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    wake: asyncio.Event = field(compare=False, default_factory=asyncio.Event)


class RobotThrottle:
    """A sliding window of `limit` posts per `window_ms` for one robot, with a priority queue in front of it.

    Only the waiter at the head of the queue watches the clock; the others wait for their turn. A platform's
    own rate-limit answer shuts the window (`hold_until`) whatever the count says."""

    def __init__(self, clock: Clock, limit: int = 20, window_ms: int = 60_000) -> None:
        if limit < 1 or window_ms <= 0:
            raise ValueError("a robot limit needs limit >= 1 and a positive window")
        self.clock, self.limit, self.window_ms = clock, limit, window_ms
        self._sent: deque[int] = deque()
        self._queue: list[_Waiter] = []
        self._seq = itertools.count()
        self._held_until = 0

    def hold_until(self, t_ms: int) -> None:
        self._held_until = max(self._held_until, t_ms)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def _free_at(self, now: int) -> int:
        while self._sent and self._sent[0] <= now - self.window_ms:
            self._sent.popleft()
        at = self._sent[0] + self.window_ms if len(self._sent) >= self.limit else now
        return max(at, self._held_until)

    async def slot(self, priority: int) -> None:
        me = _Waiter(priority, next(self._seq))
        heapq.heappush(self._queue, me)
        try:
            while True:
                if self._queue[0] is me:
                    now = self.clock.now_ms()
                    free_at = self._free_at(now)
                    if free_at <= now:
                        heapq.heappop(self._queue)
                        self._sent.append(now)
                        return
                    await self.clock.sleep_until_ms(free_at)
                else:
                    await me.wake.wait()  # set by whoever made me the head (perhaps before I got here)
                    me.wake.clear()
        except BaseException:
            if me in self._queue:
                self._queue.remove(me)
                heapq.heapify(self._queue)
            raise
        finally:
            if self._queue:
                self._queue[0].wake.set()  # the new head watches the clock now


@dataclass
class _Post:
    messages: list[Message]
    done: asyncio.Future[str | None]


class RobotChannel:
    """kind "wecom" or "dingtalk": the group robot of the alarm's community (or the deployment's default robot)."""

    outside = True

    def __init__(
        self, kind: str, base_url: str, robots: Mapping[str, Robot], client: httpx.AsyncClient, clock: Clock, *,
        community_of: Callable[[str | None], str | None] = lambda _b: None, limit: int = 20, window_s: float = 60.0,
        gather_s: float = 0.3,
    ) -> None:
        if kind not in ROBOT_KINDS:
            raise ValueError(f"unknown robot kind {kind!r}; use one of {ROBOT_KINDS}")
        self._kind = kind
        self.base_url = base_url
        self.robots = dict(robots)
        self.client = client
        self.clock = clock
        self.community_of = community_of
        self.gather_ms = round(gather_s * 1000)
        self.window_ms = round(window_s * 1000)
        self.throttles = {c: RobotThrottle(clock, limit, self.window_ms) for c in self.robots}
        self._wire = {c: asyncio.Lock() for c in self.robots}  # one post on the wire per robot: they arrive in the order they were let go
        self._gathering: dict[tuple[str, str, str, str, bool], _Post] = {}
        self._posted: OrderedDict[str, str | None] = OrderedDict()  # message key -> the post's reference

    @property
    def kind(self) -> str:
        return self._kind

    def robot_for(self, message: Message) -> Robot | None:
        community = self.community_of(message.building)
        return self.robots.get(community or DEFAULT_COMMUNITY) or self.robots.get(DEFAULT_COMMUNITY)

    async def send(self, message: Message) -> str | None:
        if message.key in self._posted:
            return self._posted[message.key]
        robot = self.robot_for(message)
        if robot is None:
            raise DeliveryFailed(self._kind, f"no {self._kind} robot for the community of building {message.building!r}", transient=False)
        group = (robot.community, message.alarm_id, message.rung, message.reason, message.drill)
        post = self._gathering.get(group)
        if post is not None:
            post.messages.append(message)
            return await asyncio.shield(post.done)
        post = self._gathering[group] = _Post([message], asyncio.get_running_loop().create_future())
        try:
            try:
                await self.clock.sleep_ms(self.gather_ms)
            finally:
                del self._gathering[group]  # closed: who joins later is in the next post
            ref = await self._post(robot, post.messages)
        except BaseException as exc:
            # the others who joined get the failure (an interrupted post is worth a retry), never a wait without end
            failed = exc if isinstance(exc, DeliveryFailed) else DeliveryFailed(self._kind, "the post was interrupted", transient=True)
            post.done.set_exception(failed)
            post.done.exception()  # retrieved: a page of one person has no other waiter
            raise
        for m in post.messages:
            self._posted[m.key] = ref
        while len(self._posted) > _REMEMBERED_POSTS:
            self._posted.popitem(last=False)
        post.done.set_result(ref)
        return ref

    def url(self, robot: Robot) -> str:
        if self._kind == "wecom":
            return f"{self.base_url}?key={urllib.parse.quote(robot.key)}"
        url = f"{self.base_url}?access_token={urllib.parse.quote(robot.key)}"
        if robot.secret:
            ts = self.clock.now_ms()
            url += f"&timestamp={ts}&sign={dingtalk_sign(robot.secret, ts)}"
        return url

    async def _post(self, robot: Robot, messages: list[Message]) -> str | None:
        throttle = self.throttles[robot.community]
        await throttle.slot(min(post_priority(m) for m in messages))
        try:
            async with self._wire[robot.community]:
                resp = await self.client.post(self.url(robot), json=robot_body(self._kind, messages))
        except httpx.TimeoutException as exc:
            raise DeliveryFailed(self._kind, f"timed out: {exc.__class__.__name__}", transient=True) from exc
        except httpx.HTTPError as exc:
            raise DeliveryFailed(self._kind, f"{exc.__class__.__name__}: {exc}", transient=True) from exc
        if resp.status_code == 429:
            throttle.hold_until(self.clock.now_ms() + self.window_ms)
            raise DeliveryFailed(self._kind, "HTTP 429: the robot is rate limited", transient=True)
        if not resp.is_success:
            raise DeliveryFailed(self._kind, f"HTTP {resp.status_code}: {resp.text[:200]}", transient=resp.status_code >= 500,
                                 status=resp.status_code)
        try:
            data = resp.json()
        except ValueError as exc:
            raise DeliveryFailed(self._kind, f"not JSON: {resp.text[:200]}", transient=True) from exc
        errcode = data.get("errcode", 0) if isinstance(data, dict) else 0
        if errcode in (0, None):
            return str(data.get("msgid") or data.get("processQueryKey") or resp.headers.get("x-request-id") or "") or None
        errmsg = str(data.get("errmsg", ""))
        if errcode in _RATE_LIMITED_ERRCODES or "too fast" in errmsg:
            throttle.hold_until(self.clock.now_ms() + self.window_ms)
            raise DeliveryFailed(self._kind, f"errcode {errcode}: {errmsg} (rate limited)", transient=True)
        raise DeliveryFailed(self._kind, f"errcode {errcode}: {errmsg}", transient=errcode in _BUSY_ERRCODES)
