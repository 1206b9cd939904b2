from __future__ import annotations

from tests.conftest import SAMPLES, SHARED_SAMPLES


def test_the_vendored_device_samples_are_the_shared_ones() -> None:
    if not SHARED_SAMPLES.exists():
        print(f"shared/ is not beside this checkout ({SHARED_SAMPLES}); checked only that the vendored copy is there")
        assert SAMPLES.read_text(encoding="utf-8").count("\n") >= 63
        return
    assert SAMPLES.read_bytes() == SHARED_SAMPLES.read_bytes(), "copy shared/device-samples/samples.jsonl to tests/fixtures/"
