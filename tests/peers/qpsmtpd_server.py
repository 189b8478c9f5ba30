"""Our own qpsmtpd-forkserver running the smtp_callback plugin exactly as its author
published it (tests/peers/qpsmtpd/smtp_callback.pl), pointed at a cbv smtpcbd listener.

Without qpsmtpd installed the tests that need it skip with one line, or fail under CI=true.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.missing import missing

PLUGIN = Path(__file__).with_name("qpsmtpd") / "smtp_callback.pl"
STOCK_PLUGINS = Path("/usr/share/qpsmtpd/plugins")
START_TIMEOUT = 15.0
RUN_AS = "qpsmtpd"  # the Debian package's user; qpsmtpd drops root privileges to it


def require_qpsmtpd() -> str:
    path = shutil.which("qpsmtpd-forkserver")
    if path is not None and STOCK_PLUGINS.is_dir():
        return path
    missing("qpsmtpd is not installed (scripts/install-test-deps installs it)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Qpsmtpd:
    """qpsmtpd with two plugins, smtp_callback (asking cbv) then rcpt_ok, or with the
    plugins file given."""

    def __init__(self, smtpcbd_address: str, local_domain: str, plugins: str | None = None,
                 logging: str = "") -> None:
        """`plugins`, when given, is the whole config/plugins file (`smtpcbd_address` is
        then unused); `logging` is the config/logging file, where `{logs}` names a folder
        qpsmtpd's user may write to (no logging plugin by default: qpsmtpd logs to stderr)."""
        self.binary = require_qpsmtpd()
        self.port = free_port()
        # qpsmtpd drops privileges, so its files live where its user can read them
        self.directory = Path(tempfile.mkdtemp(prefix="cbv-qpsmtpd-"))
        self.directory.chmod(0o755)
        self.log_path = self.directory / "qpsmtpd.log"
        self._write_config(plugins or f"smtp_callback smtpcbd {smtpcbd_address}\nrcpt_ok\n",
                           local_domain, logging.replace("{logs}", str(self.directory / "logs")))
        self.process: subprocess.Popen[bytes] | None = None

    def _write_config(self, plugins_file: str, local_domain: str, logging: str) -> None:
        plugins = self.directory / "plugins"
        plugins.mkdir()
        shutil.copyfile(PLUGIN, plugins / "smtp_callback")
        config = self.directory / "config"
        config.mkdir()
        spool = self.directory / "spool"
        spool.mkdir(mode=0o700)
        logs = self.directory / "logs"
        logs.mkdir(mode=0o700)
        files = {
            "plugin_dirs": f"{plugins}\n{STOCK_PLUGINS}\n",
            "plugins": plugins_file,
            "me": "qpsmtpd.cbv.test\n",
            "rcpthosts": f"{local_domain}\n",
            "spool_dir": f"{spool}\n",
            "loglevel": "6\n",
            "logging": logging,
        }
        for name, text in files.items():
            (config / name).write_text(text)
        for path in (self.directory, *self.directory.rglob("*")):
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            for writable in (spool, logs):
                os.chown(writable, user.pw_uid, user.pw_gid)

    def start(self) -> None:
        command = [self.binary, "-l", "127.0.0.1", "-p", str(self.port)]
        if os.geteuid() == 0:
            command += ["-u", RUN_AS]
        env = {**os.environ, "QPSMTPD_CONFIG": str(self.directory / "config")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log,
                                            cwd=self.directory)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"qpsmtpd exited at start:\n{self.log()}")
            try:
                if self._greets(deadline):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"qpsmtpd did not greet within {START_TIMEOUT} s:\n{self.log()}")

    def _greets(self, deadline: float) -> bool:
        """A session's 220 banner, not just a listening socket: each session is a child
        qpsmtpd forks, which runs its plugins' connect hooks before it greets."""
        wait = max(0.5, deadline - time.monotonic())
        with socket.create_connection(("127.0.0.1", self.port), timeout=wait) as probe:
            greeted = probe.makefile("rb").readline().startswith(b"220")
            if greeted:
                probe.sendall(b"QUIT\r\n")
            return greeted

    def log(self) -> str:
        """What qpsmtpd wrote to stderr, and what a logging/file plugin wrote in its folder."""
        files = [self.log_path, *sorted((self.directory / "logs").glob("*"))]
        return "".join(path.read_text(errors="replace") for path in files if path.exists())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
