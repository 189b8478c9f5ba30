"""Private instances of real Postfix and Exim on loopback: for the peer tests and for the
comparison of verifiers.

Each instance lives in a directory of its own (configuration, queue, logs), listens on
127.0.0.1 ports of its own, and is stopped by the pid we started. It sees DNS only through
a fake resolver: it runs in a mount namespace of its own where /etc/resolv.conf names a
FakeDNS on port 53 of a loopback address, so nothing it looks up ever reaches the system
resolver or a real domain.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from cbv.testing import FakeDNS

PEERS_DIR = Path("/opt/cbv-test-peers")  # scripts/install-peers puts the private Exim here
EXIM_BINARY = PEERS_DIR / "exim4" / "usr" / "sbin" / "exim4"
EXIM_USER = "Debian-exim"  # compiled into Debian's Exim; scripts/install-peers creates it
POSTFIX_DAEMONS = Path("/usr/lib/postfix/sbin")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
RESOLVER_NETWORK = "127.0.53"  # the fake resolver takes port 53 on a free 127.0.53.N


def unavailable(*servers: str) -> str | None:
    """Why the fake resolver, and the `servers` named ("postfix", "exim"), cannot run on this
    machine; None when they can."""
    if os.geteuid() != 0:
        return "not root (port 53 for the fake resolver, and the mail servers, need root)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is missing"
    if "postfix" in servers and not (POSTFIX_DAEMONS / "master").exists():
        return "postfix is not installed (scripts/install-test-deps installs it)"
    if "exim" in servers and not EXIM_BINARY.exists():
        return f"no private Exim at {EXIM_BINARY} (scripts/install-test-deps installs it)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def private_directory(prefix: str) -> Path:
    """A directory the mail servers' own users (postfix, Debian-exim) can traverse."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    return directory


class PrivateResolver:
    """A FakeDNS on port 53, and the resolv.conf that makes a mail server use only it."""

    def __init__(self, directory: Path) -> None:
        self.dns = self._bind()
        self.resolv_conf = directory / "resolv.conf"
        self.resolv_conf.write_text(f"nameserver {self.dns.host}\noptions timeout:2 attempts:1\n")
        self.resolv_conf.chmod(0o644)

    @staticmethod
    def _bind() -> FakeDNS:
        last = random.randint(1, 254)
        for offset in range(254):
            dns = FakeDNS(f"{RESOLVER_NETWORK}.{(last + offset) % 254 + 1}", 53)
            try:
                dns.start()
            except OSError:
                continue
            return dns
        raise OSError(f"port 53 is taken on every {RESOLVER_NETWORK}.N")

    def command(self, argv: Iterable[str]) -> list[str]:
        """`argv` run in a mount namespace where /etc/resolv.conf is ours alone."""
        script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
        return ["unshare", "--mount", "sh", "-c", script, str(self.resolv_conf), *argv]

    def stop(self) -> None:
        self.dns.stop()


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited at start:\n{tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {START_TIMEOUT} s:\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} is empty)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM to the pid we started (a master passes it on to its children)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def main_cf_settings(text: str) -> dict[str, str]:
    """`name = value` settings of a main.cf fragment; indented lines continue a value."""
    settings: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            settings[name] += " " + line.strip()
        else:
            name, _, value = (part.strip() for part in line.partition("="))
            settings[name] = value
    return settings


# Queue directories and their owner: Postfix checks these at start.
POSTFIX_QUEUES = {
    "active": ("postfix", None, 0o700), "bounce": ("postfix", None, 0o700),
    "corrupt": ("postfix", None, 0o700), "defer": ("postfix", None, 0o700),
    "deferred": ("postfix", None, 0o700), "flush": ("postfix", None, 0o700),
    "hold": ("postfix", None, 0o700), "incoming": ("postfix", None, 0o700),
    "private": ("postfix", None, 0o700), "saved": ("postfix", None, 0o700),
    "trace": ("postfix", None, 0o700), "maildrop": ("postfix", "postdrop", 0o730),
    "public": ("postfix", "postdrop", 0o710), "pid": ("root", None, 0o755),
}

POSTFIX_MASTER_CF = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """One Postfix: its own main.cf and master.cf, one smtpd per port in `listeners`.

    `settings` are main.cf lines added to a base that relays nothing and trusts no client
    (loopback is not in mynetworks); `listeners` maps each smtpd port to its own main.cf
    overrides (master.cf `-o`), so one instance can try several restriction lists.
    """

    def __init__(self, name: str, resolver: PrivateResolver, settings: str,
                 listeners: Mapping[int, Mapping[str, str]]) -> None:
        self.name = name
        self.resolver = resolver
        self.directory = private_directory(f"cbv-postfix-{name}-")
        self.config = self.directory / "conf"
        self.queue = self.directory / "queue"
        self.maillog = self.directory / "maillog"
        self.listeners = dict(listeners)
        self.process: subprocess.Popen[bytes] | None = None
        self._write(settings)

    def _write(self, settings: str) -> None:
        self.config.mkdir()
        data = self.directory / "data"
        data.mkdir()
        shutil.chown(data, "postfix")
        self.queue.mkdir()
        for queue, (user, group, mode) in POSTFIX_QUEUES.items():
            path = self.queue / queue
            path.mkdir(mode=mode)
            path.chmod(mode)
            shutil.chown(path, user, group)
        base = f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {data}
myhostname = {self.name}.cbv.test
mydomain = cbv.test
myorigin = cbv.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 192.0.2.1/32
smtpd_peername_lookup = no
maillog_file = {self.maillog}
maillog_file_prefixes = {self.directory}
alias_maps =
alias_database =
biff = no
"""
        (self.config / "main.cf").write_text(base + settings)
        services = []
        for port, overrides in self.listeners.items():
            options = "".join(f"\n  -o {{ {key} = {value} }}" for key, value in overrides.items())
            services.append(f"127.0.0.1:{port} inet n - n - - smtpd{options}\n")
        (self.config / "master.cf").write_text("".join(services) + POSTFIX_MASTER_CF)

    def start(self) -> None:
        command = [str(POSTFIX_DAEMONS / "master"), "-c", str(self.config), "-s"]
        with (self.directory / "master.out").open("wb") as out:
            self.process = subprocess.Popen(self.resolver.command(command), stdout=out,
                                            stderr=subprocess.STDOUT)
        for port in self.listeners:
            wait_listening(port, self.process, self.maillog)

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def held(self) -> list[str]:
        """Queue ids of the messages in the hold queue (quarantined)."""
        return sorted(path.name for path in (self.queue / "hold").rglob("*") if path.is_file())


class Exim:
    """One Exim daemon (`-bdf`, in the foreground) with its own configuration file.

    Started as root with `-C`, Exim keeps root only for this process: it is never sent
    SIGHUP (the re-exec would lose root), only stopped and started anew. Its deliveries
    re-exec `exim_path` without root (the paniclog says "exim user lost privilege for using
    -C option"), which is all an smtp transport needs.
    """

    def __init__(self, name: str, resolver: PrivateResolver, port: int, *, acl_rcpt: str,
                 routers: str, transports: str, settings: str = "") -> None:
        self.name = name
        self.resolver = resolver
        self.port = port
        self.directory = private_directory(f"cbv-exim-{name}-")
        self.mainlog = self.directory / "log" / "mainlog"
        self.process: subprocess.Popen[bytes] | None = None
        for part in ("spool", "log"):
            (self.directory / part).mkdir()
            shutil.chown(self.directory / part, EXIM_USER, EXIM_USER)
        self.config = self.directory / "exim.conf"
        self.config.write_text(f"""\
primary_hostname = {name}.cbv.test
exim_path = {EXIM_BINARY}
qualify_domain = cbv.test
spool_directory = {self.directory}/spool
log_file_path = {self.directory}/log/%slog
pid_file_path = {self.directory}/exim.pid
local_interfaces = 127.0.0.1
daemon_smtp_ports = {port}
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
keep_environment =
dns_ipv4_lookup = *
domainlist relay_to_domains = *.test
acl_smtp_rcpt = acl_check_rcpt
{settings}
begin acl

acl_check_rcpt:
  deny    !domains = +relay_to_domains
          message  = relay not permitted
{acl_rcpt}
  accept

begin routers

{routers}
begin transports

{transports}
begin retry

*   *   F,1h,1m
""")

    def start(self) -> None:
        command = [str(EXIM_BINARY), "-C", str(self.config), "-bdf"]
        with (self.directory / "exim.out").open("wb") as out:
            self.process = subprocess.Popen(self.resolver.command(command), stdout=out,
                                            stderr=subprocess.STDOUT)
        wait_listening(self.port, self.process, self.directory / "exim.out")

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.mainlog.read_text(errors="replace")
        return ""
