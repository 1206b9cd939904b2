"""Notifications: one channel interface; console, MQTT and webhook channels; the providers (Alibaba/Tencent SMS, Alibaba
voice, WeCom/DingTalk robots: docs/notify.md); the dispatcher; receipts."""

from backend.notify.channel import Channel, ChannelMissing, DeliveryFailed, DeliveryStatus, Message, NotifyError, Receipt
from backend.notify.console import ConsoleChannel
from backend.notify.dispatch import Dispatcher, RetryPolicy
from backend.notify.mqtt import MqttNoticeChannel
from backend.notify.providers import ProviderMisconfigured, provider_channels
from backend.notify.ratelimit import RateLimiter
from backend.notify.receipts import ReceiptStore
from backend.notify.robots import RobotChannel
from backend.notify.settings import NotifySettings
from backend.notify.sms import AliyunSmsChannel, TencentSmsChannel
from backend.notify.voice import AliyunVoiceChannel
from backend.notify.webhook import WebhookChannel

__all__ = [
    "AliyunSmsChannel",
    "AliyunVoiceChannel",
    "Channel",
    "ChannelMissing",
    "ConsoleChannel",
    "DeliveryFailed",
    "DeliveryStatus",
    "Dispatcher",
    "Message",
    "MqttNoticeChannel",
    "NotifyError",
    "NotifySettings",
    "ProviderMisconfigured",
    "RateLimiter",
    "Receipt",
    "ReceiptStore",
    "RetryPolicy",
    "RobotChannel",
    "TencentSmsChannel",
    "WebhookChannel",
    "provider_channels",
]
