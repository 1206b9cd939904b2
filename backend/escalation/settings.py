"""Settings of the escalation service and its notification channels (a section for backend/settings.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["EscalationSettings"]


class EscalationSettings(BaseModel):
    """The escalation ladder and the notification channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_file: Path | None = Field(default=None, description="Escalation policy file (YAML); unset: the defaults in alerting/policies/ladder.yaml.")
    poll_interval_s: float = Field(default=0.5, gt=0, le=5, description="Longest sleep of the timer loop: how late another process's new escalation is seen.")
    batch: int = Field(default=100, ge=1, description="Escalations stepped per round of the timer loop.")
    outbox_lease_s: float = Field(default=60.0, gt=0, description="A notice claimed but unfinished this long is delivered again (same idempotency key).")
    utc_offset_min: int = Field(default=480, ge=-720, le=840, description="Local time of the duty rosters, minutes east of UTC (Beijing: 480). "
                                "Deprecated: set site.time_zone; unset, this is its offset.")
    link_base_url: str = Field(default="http://127.0.0.1:8080", description="Public base URL of the API, for one-tap answer links in SMS.")
    link_ttl_s: float = Field(default=30 * 60, gt=0, description="How long a one-tap answer link stays valid (issue 22: 30 min; each move once, in order).")
    rate_limit: int = Field(default=6, ge=1, description="Notices per responder per window before the rest fold into one storm summary.")
    rate_window_s: float = Field(default=60.0, gt=0, description="The rate-limit window per responder.")
    retry_attempts: int = Field(default=6, ge=1, description="Attempts per notice and channel (first try included) on transient failures.")
    retry_base_s: float = Field(default=0.5, gt=0, description="First back-off delay; doubles each retry.")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest back-off delay.")
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one webhook request.")
    sms_url: str | None = Field(default=None, description="SMS gateway webhook URL; unset: no SMS channel.")
    voice_url: str | None = Field(default=None, description="Voice-call gateway webhook URL; unset: no voice channel.")
    wecom_url: str | None = Field(default=None, description="WeCom (企业微信) group robot webhook URL.")
    dingtalk_url: str | None = Field(default=None, description="DingTalk (钉钉) group robot webhook URL.")
    webhook_token: SecretStr | None = Field(default=None, description="Bearer token sent to the SMS/voice gateways; from the environment.")
