"""contrib/cbv.service: unprivileged, reload by SIGHUP, stop within cbv's own grace, and
valid for systemd itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cbv.config import ServerConfig
from tests.missing import missing

UNIT = Path(__file__).resolve().parent.parent / "contrib" / "cbv.service"


def settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_it_runs_cbv_serve_unprivileged() -> None:
    unit = settings()
    assert unit["ExecStart"] == ["/usr/local/bin/cbv serve"]
    assert unit["User"] == ["cbv"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["KillSignal"] == ["SIGTERM"]
    assert float(unit["TimeoutStopSec"][0]) > ServerConfig().shutdown_timeout
    assert unit["Environment"] == ["XDG_STATE_HOME=/var/lib"]
    assert unit["StateDirectory"] == ["cbv"]


def test_systemd_accepts_it(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze is not installed (scripts/install-test-deps installs systemd)")
    copy = tmp_path / "cbv.service"
    cbv = Path(sys.executable).with_name("cbv")
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/cbv", str(cbv)))
    checked = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == "", checked.stderr
