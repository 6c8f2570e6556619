"""`liaison requests relocate` as an operator runs it after importing grid cells."""

from __future__ import annotations

from tests.deploy.conftest import liaison
from tests.helpers import TenantInfo


def test_relocate_reports_what_it_routed(cli_env: dict[str, str], alpha: TenantInfo) -> None:
    done = liaison(cli_env, "requests", "relocate", "--tenant", alpha.code)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "queued requests routed" in done.stdout


def test_an_unknown_tenant_is_one_sentence_and_exit_2(cli_env: dict[str, str]) -> None:
    done = liaison(cli_env, "requests", "relocate", "--tenant", "atlantis")
    assert done.returncode == 2
    assert "tenant 'atlantis' does not exist." in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
