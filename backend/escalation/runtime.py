"""Everything the escalation needs, built from settings and owned by one async context manager.

How to wire it (backend/server.py):

    async with EscalationRuntime(settings.escalation, engine, sites, clock, publish=mqtt_client.publish,
                                 links=one_tap.link) as escalation:
        ... the alarm-ladder bridge (backend.escalation.bridge) feeds the service the alarm's committed changes

On entry it loads the policies, opens the stores (creating their tables), builds the roster from the site
directory, the channels that are configured (console always; MQTT app/sounder/display when `publish` is
given; SMS/voice/WeCom/DingTalk when their URL is set) and the dispatcher, and enters the service (which
fires whatever fell due while the process was down). On exit it stops the service and closes the HTTP client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import sqlalchemy as sa
import yaml

from alerting.ladder import DEFAULT_POLICIES_RESOURCE, PolicySet, parse_policies
from backend.escalation.service import EscalationService, LinkMaker, StepReport
from backend.escalation.settings import EscalationSettings
from backend.escalation.store import EscalationStore
from backend.notify.channel import Channel, Receipt
from backend.notify.dispatch import Dispatcher, RetryPolicy
from backend.notify.mqtt import MqttNoticeChannel, Publish
from backend.notify.providers import provider_channels
from backend.notify.ratelimit import RateLimiter
from backend.notify.receipts import ReceiptStore
from backend.notify.settings import NotifySettings
from backend.notify.webhook import WebhookChannel
from backend.sites.model import SiteDirectory
from backend.sites.roster import SiteRoster
from backend.stream import CentreStream
from broker.clock import Clock

__all__ = ["EscalationRuntime", "build_channels", "load_policies"]


def load_policies(path: Path | None = None) -> PolicySet:
    text = path.read_text(encoding="utf-8") if path is not None else (resources.files("alerting") / DEFAULT_POLICIES_RESOURCE).read_text(encoding="utf-8")
    return parse_policies(yaml.safe_load(text))


def build_channels(settings: EscalationSettings, http: httpx.AsyncClient, publish: Publish | None) -> dict[str, Channel]:
    channels: dict[str, Channel] = {}
    if publish is not None:
        for kind in ("app", "sounder", "display"):
            channels[kind] = MqttNoticeChannel(kind, publish)
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    for kind, url in (("sms", settings.sms_url), ("voice", settings.voice_url), ("wecom", settings.wecom_url), ("dingtalk", settings.dingtalk_url)):
        if url:
            headers = {"Authorization": f"Bearer {token}"} if token and kind in ("sms", "voice") else None
            channels[kind] = WebhookChannel(kind, url, http, headers=headers)
    return channels


class EscalationRuntime:
    def __init__(
        self, settings: EscalationSettings, engine: sa.Engine, directory: SiteDirectory, clock: Clock, *,
        stream: CentreStream | None = None, publish: Publish | None = None, links: LinkMaker | None = None,
        on_step: Callable[[StepReport], None] | None = None,
        worker_id: str = "backend", sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        notify: NotifySettings | None = None,
    ) -> None:
        self.notify = notify  # the providers' channels (issue 18), laid over the generic webhooks
        self.settings = settings
        self.engine = engine
        self.directory = directory
        self.clock = clock
        self.stream = stream or CentreStream()  # ladder steps and console notices go out here
        self.publish = publish
        self.links = links
        self.on_step = on_step
        self.worker_id = worker_id
        self.sleep = sleep
        self._http: httpx.AsyncClient | None = None
        self._service: EscalationService | None = None

    @property
    def service(self) -> EscalationService:
        assert self._service is not None, "enter the runtime first"
        return self._service

    async def __aenter__(self) -> Self:
        s = self.settings
        policies = load_policies(s.policy_file)
        self.policies = policies
        self.store = EscalationStore(self.engine, policies)
        self.receipts = ReceiptStore(self.engine)
        self.roster = SiteRoster(self.directory, s.utc_offset_min)
        self._http = await asyncio.to_thread(httpx.AsyncClient, timeout=s.webhook_timeout_s)  # loading its CA bundle held the loop 0.1-0.6 s (issue 19)

        async def record(r: Receipt) -> None:
            await asyncio.to_thread(self.receipts.record, r)

        async def record_many(rs: list[Receipt]) -> None:
            await asyncio.to_thread(self.receipts.record_many, rs)

        dispatcher = Dispatcher(
            {**build_channels(s, self._http, self.publish), **self._providers()}, self.stream, self.clock, sleep=self.sleep,
            retry=RetryPolicy(s.retry_attempts, s.retry_base_s, 2.0, s.retry_max_s), limiter=RateLimiter(s.rate_limit, s.rate_window_s),
            record=record, record_many=record_many,
        )
        self._service = EscalationService(
            self.store, policies, self.roster, dispatcher, self.clock, settings=s, worker_id=self.worker_id, links=self.links,
            place_name=self.place_name, on_step=self.on_step,
        )
        try:
            await self._service.__aenter__()
        except BaseException:
            await self._http.aclose()
            raise
        return self

    def _providers(self) -> dict[str, Channel]:
        """The providers' channels of the `notify` settings (backend.notify.providers); none without them."""
        if self.notify is None or self._http is None:
            return {}
        d = self.directory

        def community_of(building: str | None) -> str | None:
            return d.community_of_building(building) if building and building in d.buildings else None

        return provider_channels(self.notify, self._http, self.clock, engine=self.engine, link_base_url=self.settings.link_base_url,
                                 link_ttl_s=self.settings.link_ttl_s, community_of=community_of)

    def place_name(self, where: object) -> str:
        from alerting.ladder import Where

        assert isinstance(where, Where)
        d = self.directory
        parts: list[str] = []
        if where.building and where.building in d.buildings:
            parts.append(d.buildings[where.building].name)
        if where.unit is not None:
            parts.append(f"{where.unit}单元")
        if where.household and where.household in d.households:
            parts.append(d.households[where.household].room)
        return " ".join(parts) or "位置未知"

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._service is not None:
                await self._service.__aexit__(exc_type, exc, tb)
        finally:
            if self._http is not None:
                await self._http.aclose()
