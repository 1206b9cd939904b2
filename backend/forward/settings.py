"""Settings of the 119 hand-off (转警 119, backend.forward): a section for backend/settings.py, `[forward]`."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["ForwardSettings"]


class ForwardSettings(BaseModel):
    """转警 119: a fire verified as real (or treated as real when nobody verified it in its window) is forwarded to the fire
    brigade's receiving system within 3 s (GB 50440), with a receipt (docs/forward.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="Forward confirmed fires to the receiving system (needs primary_url).")
    primary_url: str | None = Field(default=None, description="The receiving system's webhook (HTTP POST, JSON; answers with a receipt number).")
    fallback_url: str | None = Field(default=None, description="A second channel, tried when the primary fails or times out (within the same 3 s).")
    drills: bool = Field(default=False, description="A drill's fire is forwarded too, to drill_url only. Off: recorded as 'not forwarded: drill'.")
    drill_url: str | None = Field(default=None, description="Where drills go when `drills` is on (never the real receiver); unset: drills are not forwarded.")
    alarm_types: tuple[str, ...] = Field(
        default=("smoke", "confirmed_fire", "heat", "gas", "*fire*"),
        description="Alarm types that are fires (shell patterns, e.g. *fire*): the ladder's fire policy's types plus heat and gas detectors.",
    )
    budget_s: float = Field(default=3.0, gt=0, le=30, description="GB 50440's limit: every channel is tried, in turn, within this many seconds "
                            "of the verification; then the forward counts as failed (a system alarm) and is retried.")
    attempt_timeout_s: float = Field(default=1.0, gt=0, le=30, description="Longest wait for one channel's answer (connect included).")
    connect_timeout_s: float = Field(default=0.5, gt=0, le=30, description="Longest wait to connect to one channel.")
    retry_every_s: float = Field(default=10.0, gt=0, le=3600, description="After a round in which every channel failed, the next round this much later, "
                                  "until a receipt.")
    scan_every_s: float = Field(default=0.5, gt=0, le=60, description="How often the store is read for verifications made in another "
                                "process (a cluster backend) and for rounds due again.")
    recover_hours: float = Field(default=2.0, gt=0, le=24 * 30, description="At start, verifications this recent with no receipt are "
                                  "forwarded (same forward id) while their alarm is still open.")
    duty_phone: str = Field(default="", description="The command room's (值班室) phone sent as the contact when a community has none of its own.")
    community_phones: dict[str, str] = Field(default={}, description="Per community id, its duty room's phone (wins over duty_phone).")
    token: SecretStr | None = Field(default=None, description="Bearer token for the receiver (Authorization header); from the environment "
                                    "(SHOUWANG_FORWARD__TOKEN).")
    hmac_secret: SecretStr | None = Field(default=None, description="Secret for the X-Shouwang-Signature header (HMAC-SHA256 of timestamp.body); "
                                          "from the environment (SHOUWANG_FORWARD__HMAC_SECRET).")

    @model_validator(mode="after")
    def _has_receiver(self) -> Self:
        if self.enabled and not self.primary_url:
            raise ValueError("forward.enabled needs forward.primary_url (the receiving system's webhook)")
        if self.attempt_timeout_s < self.connect_timeout_s:
            raise ValueError("forward.attempt_timeout_s must be at least forward.connect_timeout_s")
        return self
