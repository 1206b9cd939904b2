"""Settings of the providers' channels (the `notify` section of backend/settings.py).

Secrets (AccessKey secrets, robot keys and secrets, the voice-report token) come from the environment, e.g.
SHOUWANG_NOTIFY__ALIYUN_ACCESS_KEY_SECRET=…, SHOUWANG_NOTIFY__DINGTALK_TOKENS='{"c01": "…"}'; never from the
repository. Unset providers leave the generic webhooks of the `escalation` section in charge.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["DEFAULT_SMS_TEMPLATES", "NotifySettings", "SmsTemplateConfig"]


class SmsTemplateConfig(BaseModel):
    """One approved SMS template: the provider's code, its approved text (${name} placeholders) and its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(description="Alibaba TemplateCode (SMS_…) or Tencent TemplateId, as the provider approved it.")
    text: str = Field(description="The approved text with ${name} placeholders, without the signature: the one-part length is checked on it.")
    params: list[str] = Field(description="The parameters in the template's order (Tencent's TemplateParamSet is positional).")


DEFAULT_SMS_TEMPLATES: dict[str, dict[str, Any]] = {  # the texts to have approved; the codes are the provider's answer
    "page": {"code": "", "text": "${severity}${title}，${place}。${action}：${link}", "params": ["severity", "title", "place", "action", "link"]},
    "drill": {"code": "", "text": "演练：${title}，${place}。${action}：${link}", "params": ["title", "place", "action", "link"]},
    "storm": {"code": "", "text": "${minutes}分钟内另有${count}条报警通知未逐条发送，请查看值班台。", "params": ["minutes", "count"]},
}


class NotifySettings(BaseModel):
    """The providers' channels: SMS (Alibaba Cloud, Tencent Cloud), voice (Alibaba Cloud), WeCom and DingTalk robots."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sms_provider: Literal["webhook", "aliyun", "tencent"] = Field(
        default="webhook", description="SMS through the generic webhook (escalation.sms_url), Alibaba Cloud or Tencent Cloud.")
    voice_provider: Literal["webhook", "aliyun"] = Field(
        default="webhook", description="Voice calls through the generic webhook (escalation.voice_url) or Alibaba Cloud voice notification.")
    provider_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one call to a provider's API.")
    sms_sign_name: str = Field(default="守望", description="The approved SMS signature (SignName), shown as 【…】 before the text.")
    sms_templates: dict[str, SmsTemplateConfig] = Field(
        default=DEFAULT_SMS_TEMPLATES, validate_default=True,
        description="Approved SMS templates per notice kind (page, drill, storm): code, approved text, parameters. Only templates "
                    "are ever sent, never free text; the codes must be set when an SMS provider is chosen.")
    short_link_base_url: str | None = Field(
        default=None, description="Public base URL of the short links (<base>/s/<code>) in SMS; unset: escalation.link_base_url.")
    aliyun_access_key_id: str | None = Field(default=None, description="Alibaba Cloud AccessKey id (SMS and voice).")
    aliyun_access_key_secret: SecretStr | None = Field(default=None, description="Alibaba Cloud AccessKey secret; from the environment.")
    aliyun_sms_endpoint: str = Field(default="dysmsapi.aliyuncs.com", description="Endpoint of Alibaba Cloud SMS (dysmsapi).")
    aliyun_voice_endpoint: str = Field(default="dyvmsapi.aliyuncs.com", description="Endpoint of Alibaba Cloud voice (dyvmsapi).")
    aliyun_protocol: Literal["https", "http"] = Field(default="https", description="Protocol to Alibaba Cloud (http only for local fakes).")
    tencent_secret_id: str | None = Field(default=None, description="Tencent Cloud SecretId (SMS).")
    tencent_secret_key: SecretStr | None = Field(default=None, description="Tencent Cloud SecretKey; from the environment.")
    tencent_endpoint: str = Field(default="sms.tencentcloudapi.com", description="Endpoint of Tencent Cloud SMS.")
    tencent_protocol: Literal["https", "http"] = Field(default="https", description="Protocol to Tencent Cloud (http only for local fakes).")
    tencent_region: str = Field(default="ap-guangzhou", description="Tencent Cloud region of the SMS application.")
    tencent_sms_app_id: str | None = Field(default=None, description="Tencent Cloud SmsSdkAppId of the SMS application.")
    voice_tts_code: str | None = Field(default=None, description="Approved TTS template (TtsCode) of a page call; it ends with 确认收到请按1.")
    voice_drill_tts_code: str | None = Field(default=None, description="Approved TTS template of a drill call (says 演练); unset: drills get no call.")
    voice_show_number: str | None = Field(default=None, description="The number a voice call shows (CalledShowNumber, one the account owns).")
    voice_play_times: int = Field(default=2, ge=1, le=3, description="How many times a call reads its text.")
    voice_report_token: SecretStr | None = Field(
        default=None, min_length=16,
        description="Secret path segment of the voice-report route (POST /api/notify/voice-report/<token>) given to Alibaba Cloud as the "
                    "receipt URL; unset: keypress receipts are refused. From the environment.")
    wecom_url: str = Field(default="https://qyapi.weixin.qq.com/cgi-bin/webhook/send", description="WeCom group robot endpoint.")
    wecom_keys: dict[str, SecretStr] = Field(
        default={}, description="WeCom robot webhook key per community id (\"*\": every other community); set: replaces escalation.wecom_url.")
    dingtalk_url: str = Field(default="https://oapi.dingtalk.com/robot/send", description="DingTalk group robot endpoint.")
    dingtalk_tokens: dict[str, SecretStr] = Field(
        default={}, description="DingTalk robot access_token per community id (\"*\": every other community); set: replaces escalation.dingtalk_url.")
    dingtalk_secrets: dict[str, SecretStr] = Field(
        default={}, description="DingTalk signing secret (SEC…) per community id, for robots in signed mode.")
    robot_posts_per_minute: int = Field(default=20, ge=1, le=20, description="Posts per robot per minute (both platforms allow 20).")
    robot_gather_s: float = Field(default=0.3, ge=0, le=5, description="How long a robot gathers the notices of one page into one post.")
