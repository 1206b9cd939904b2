from __future__ import annotations

import pytest

from shouwang.cli import COMMANDS, main


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"shouwang {command}" in out
    assert len(out.splitlines()) >= 3
