"""The providers' channels of a deployment, built from the `notify` settings.

How this works: `provider_channels(...)` returns the channels the settings choose, by kind: "sms" (Alibaba or
Tencent), "voice" (Alibaba), "wecom" / "dingtalk" (a robot per community). The escalation runtime lays them over
the generic webhooks of the `escalation` section, so a kind not configured here keeps its webhook. The SDK
clients are pointed at their endpoint and protocol through their own documented configuration (Alibaba
`Config(endpoint, protocol)`, Tencent `HttpProfile(endpoint, protocol)`), which is also how the tests point them
at local fakes. A provider chosen without its credentials or templates stops the start with a sentence saying
which setting is missing (`ProviderMisconfigured`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

from backend.notify.channel import Channel, NotifyError
from backend.notify.robots import Robot, RobotChannel
from backend.notify.settings import NotifySettings
from backend.notify.shortlinks import ShortLinks
from backend.notify.sms import AliyunSmsChannel, Shorten, SmsTemplate, TencentSmsChannel
from backend.notify.voice import AliyunVoiceChannel
from broker.clock import Clock

__all__ = ["ProviderMisconfigured", "provider_channels", "short_link_maker"]

_T = TypeVar("_T")


class ProviderMisconfigured(NotifyError):
    def __init__(self, setting: str, why: str) -> None:
        self.setting = setting
        super().__init__(f"notify.{setting}: {why}")


def _need(value: _T | None, setting: str) -> _T:
    if not value:
        raise ProviderMisconfigured(setting, "must be set for the provider chosen")
    return value


def _secret(value: SecretStr | None, setting: str) -> str:
    return _need(value, setting).get_secret_value()


def short_link_maker(links: ShortLinks, base_url: str, clock: Clock, ttl_s: float) -> Shorten:
    import asyncio

    async def shorten(target: str, key: str) -> str:
        code = await asyncio.to_thread(links.shorten, target, key, now_ms=clock.now_ms(), ttl_ms=round(ttl_s * 1000))
        return f"{base_url.rstrip('/')}/s/{code}"

    return shorten


def _templates(s: NotifySettings) -> dict[str, SmsTemplate]:
    out: dict[str, SmsTemplate] = {}
    for kind, t in s.sms_templates.items():
        _need(t.code, f"sms_templates.{kind}.code")
        out[kind] = SmsTemplate(t.code, t.text, tuple(t.params))
    return out


def provider_channels(
    s: NotifySettings, http: httpx.AsyncClient, clock: Clock, *, engine: sa.Engine | None = None, link_base_url: str = "",
    link_ttl_s: float = 1800.0, community_of: Callable[[str | None], str | None] = lambda _b: None,
) -> dict[str, Channel]:
    channels: dict[str, Channel] = {}
    shorten = None
    if s.sms_provider != "webhook" and engine is not None:
        shorten = short_link_maker(ShortLinks(engine), s.short_link_base_url or link_base_url, clock, link_ttl_s)
    if s.sms_provider == "aliyun":
        from alibabacloud_dysmsapi20170525.client import Client as SmsClient
        from alibabacloud_tea_openapi.models import Config

        client = SmsClient(Config(access_key_id=_need(s.aliyun_access_key_id, "aliyun_access_key_id"),
                                  access_key_secret=_secret(s.aliyun_access_key_secret, "aliyun_access_key_secret"),
                                  endpoint=s.aliyun_sms_endpoint, protocol=s.aliyun_protocol))
        channels["sms"] = AliyunSmsChannel(client, s.sms_sign_name, _templates(s), shorten=shorten, timeout_s=s.provider_timeout_s)
    elif s.sms_provider == "tencent":
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111.sms_client import SmsClient as TencentClient

        profile = ClientProfile(httpProfile=HttpProfile(protocol=s.tencent_protocol, endpoint=s.tencent_endpoint, reqMethod="POST",
                                                        reqTimeout=max(1, round(s.provider_timeout_s))))
        cred = credential.Credential(_need(s.tencent_secret_id, "tencent_secret_id"), _secret(s.tencent_secret_key, "tencent_secret_key"))
        tclient = TencentClient(cred, s.tencent_region, profile)
        channels["sms"] = TencentSmsChannel(tclient, _need(s.tencent_sms_app_id, "tencent_sms_app_id"), s.sms_sign_name, _templates(s),
                                            shorten=shorten)
    if s.voice_provider == "aliyun":
        from alibabacloud_dyvmsapi20170525.client import Client as VoiceClient
        from alibabacloud_tea_openapi.models import Config as VoiceConfig

        vclient = VoiceClient(VoiceConfig(access_key_id=_need(s.aliyun_access_key_id, "aliyun_access_key_id"),
                                          access_key_secret=_secret(s.aliyun_access_key_secret, "aliyun_access_key_secret"),
                                          endpoint=s.aliyun_voice_endpoint, protocol=s.aliyun_protocol))
        channels["voice"] = AliyunVoiceChannel(vclient, _need(s.voice_tts_code, "voice_tts_code"),
                                               _need(s.voice_show_number, "voice_show_number"), play_times=s.voice_play_times,
                                               timeout_s=s.provider_timeout_s, drill_tts_code=s.voice_drill_tts_code)
    if s.wecom_keys:
        robots = {c: Robot(c, k.get_secret_value()) for c, k in s.wecom_keys.items()}
        channels["wecom"] = RobotChannel("wecom", s.wecom_url, robots, http, clock, community_of=community_of,
                                         limit=s.robot_posts_per_minute, gather_s=s.robot_gather_s)
    if s.dingtalk_tokens:
        unknown = set(s.dingtalk_secrets) - set(s.dingtalk_tokens)
        if unknown:
            raise ProviderMisconfigured("dingtalk_secrets", f"communities {sorted(unknown)} have a secret but no access token")
        robots = {c: Robot(c, t.get_secret_value(), s.dingtalk_secrets[c].get_secret_value() if c in s.dingtalk_secrets else None)
                  for c, t in s.dingtalk_tokens.items()}
        channels["dingtalk"] = RobotChannel("dingtalk", s.dingtalk_url, robots, http, clock, community_of=community_of,
                                            limit=s.robot_posts_per_minute, gather_s=s.robot_gather_s)
    return channels
