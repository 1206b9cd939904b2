"""Notifications: one channel interface; console, MQTT and webhook channels; the dispatcher; receipts."""

from backend.notify.channel import Channel, ChannelMissing, DeliveryFailed, DeliveryStatus, Message, NotifyError, Receipt
from backend.notify.console import ConsoleChannel
from backend.notify.dispatch import Dispatcher, RetryPolicy
from backend.notify.mqtt import MqttNoticeChannel
from backend.notify.ratelimit import RateLimiter
from backend.notify.receipts import ReceiptStore
from backend.notify.webhook import WebhookChannel

__all__ = [
    "Channel",
    "ChannelMissing",
    "ConsoleChannel",
    "DeliveryFailed",
    "DeliveryStatus",
    "Dispatcher",
    "Message",
    "MqttNoticeChannel",
    "NotifyError",
    "RateLimiter",
    "Receipt",
    "ReceiptStore",
    "RetryPolicy",
    "WebhookChannel",
]
