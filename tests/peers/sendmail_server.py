"""A private Sendmail 8.17 on loopback, from the Debian packages scripts/install-peers
unpacks into /opt/cbv-test-peers/sendmail (installing sendmail would remove Postfix).

It runs as the copy of the binary without its setgid bit, so that LD_LIBRARY_PATH reaches
the unpacked libwrap0, with a sendmail.cf that m4 builds from the unpacked sendmail-cf. Every
sendmail command runs in a mount namespace of its own where /etc/hosts names the host (else
Sendmail waits 60 s for its unqualified name), /etc/resolv.conf names the tests' fake DNS,
and /dev/log is a datagram socket this module reads: Sendmail logs only through syslog.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from bench.mail_servers import (
    PEERS_DIR,
    PrivateResolver,
    free_port,
    private_directory,
    stop_process,
    tail,
    wait_listening,
)

SENDMAIL_DIR = PEERS_DIR / "sendmail"
BINARY = SENDMAIL_DIR / "sendmail"  # the copy without setgid
CF_DIR = SENDMAIL_DIR / "usr" / "share" / "sendmail" / "cf"
HOST_NAME = "sendmail.cbv.test"
COMMAND_TIMEOUT = 30.0

# Run in the namespace: $1 is the instance's folder, the rest the command. /dev is a fresh
# tmpfs holding the host's usual device nodes and our /dev/log; nothing is seen outside.
NAMESPACE = r"""
dir=$1; shift
mount --bind "$dir/hosts" /etc/hosts
mount --bind "$dir/resolv.conf" /etc/resolv.conf
mount --bind /dev "$dir/host-dev"
mount -t tmpfs -o mode=755 cbv-dev /dev
for node in null zero random urandom full tty; do
    touch "/dev/$node" && mount --bind "$dir/host-dev/$node" "/dev/$node"
done
ln -s /proc/self/fd /dev/fd
touch /dev/log && mount --bind "$dir/log.sock" /dev/log
exec "$@"
"""


def unavailable() -> str | None:
    """Why the private Sendmail cannot run here; None when it can."""
    if not BINARY.exists():
        return f"no private Sendmail at {BINARY} (scripts/install-test-deps installs it)"
    if shutil.which("m4") is None:
        return "m4 is missing (scripts/install-test-deps installs it)"
    return None


class Syslog:
    """The /dev/log Sendmail writes to, as lines for the tests to wait on."""

    def __init__(self, path: Path) -> None:
        self.lines: list[str] = []
        self._path = path
        self._arrived = threading.Condition()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        path.chmod(0o666)  # Sendmail's queue runners log as its own user too
        self._reader = threading.Thread(target=self._read, daemon=True, name="sendmail-syslog")
        self._reader.start()

    def _read(self) -> None:
        """Until the empty datagram that `stop()` sends."""
        while data := self._socket.recv(65536):
            with self._arrived:
                self.lines.append(data.decode(errors="replace").rstrip("\n"))
                self._arrived.notify_all()

    def wait_for(self, matches: Callable[[str], bool], timeout: float = COMMAND_TIMEOUT
                 ) -> str | None:
        def find() -> str | None:
            return next((line for line in self.lines if matches(line)), None)

        with self._arrived:
            self._arrived.wait_for(lambda: find() is not None, timeout)
        return find()

    def stop(self) -> None:
        if self._reader.is_alive():
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker:
                waker.sendto(b"", str(self._path))
            self._reader.join(COMMAND_TIMEOUT)
        self._socket.close()


class Sendmail:
    """One Sendmail daemon on a free 127.0.0.1 port with `milter_line` in its sendmail.mc,
    relaying mail for `relay_domains` to the sink on `sink_port`."""

    def __init__(self, resolver: PrivateResolver, milter_line: str,
                 relay_domains: Iterable[str], sink_port: int) -> None:
        self.port = free_port()
        self.directory = private_directory("cbv-sendmail-")
        self.cf = self.directory / "sendmail.cf"
        (self.directory / "mqueue").mkdir(mode=0o700)
        (self.directory / "host-dev").mkdir()
        names = f"{HOST_NAME} {socket.gethostname()} localhost"
        (self.directory / "hosts").write_text(f"127.0.0.1 {names}\n::1 {names}\n")
        shutil.copyfile(resolver.resolv_conf, self.directory / "resolv.conf")
        (self.directory / "service.switch").write_text("hosts files\naliases files\n")
        mc = self.directory / "sendmail.mc"
        mc.write_text(self._mc(milter_line, relay_domains, sink_port))
        built = subprocess.run(["m4", f"-D_CF_DIR_={CF_DIR}/", str(mc)], capture_output=True,
                               text=True, timeout=COMMAND_TIMEOUT, check=False)
        if built.returncode != 0:
            raise RuntimeError(f"m4 could not build sendmail.cf:\n{built.stderr}")
        self.cf.write_text(built.stdout)
        self.syslog = Syslog(self.directory / "log.sock")
        self.output = self.directory / "sendmail.out"
        self.process: subprocess.Popen[bytes] | None = None

    def _mc(self, milter_line: str, relay_domains: Iterable[str], sink_port: int) -> str:
        folder = self.directory
        return "\n".join([
            "divert(-1)", "divert(0)dnl",
            f"include(`{CF_DIR}/m4/cf.m4')dnl",
            "VERSIONID(`cbv peer tests')dnl",
            "OSTYPE(`linux')dnl",
            # maps and files in a folder under /tmp: Sendmail would refuse them silently
            "define(`confDONT_BLAME_SENDMAIL', `MapInUnsafeDirPath')dnl",
            f"define(`QUEUE_DIR', `{folder}/mqueue')dnl",
            f"define(`confPID_FILE', `{folder}/sendmail.pid')dnl",
            f"define(`STATUS_FILE', `{folder}/statistics')dnl",
            "define(`ALIAS_FILE', `')dnl",
            "define(`confHOST_STATUS_DIRECTORY', `')dnl",
            f"define(`confDOMAIN_NAME', `{HOST_NAME}')dnl",
            # host names from /etc/hosts alone: the fake DNS is for the mail being verified
            f"define(`confSERVICE_SWITCH_FILE', `{folder}/service.switch')dnl",
            # else 127.0.0.1 is one of its own names, and the smart host would be itself
            "define(`confDONT_PROBE_INTERFACES', `True')dnl",
            "define(`SMART_HOST', `[127.0.0.1]')dnl",
            f"define(`RELAY_MAILER_ARGS', `TCP $h {sink_port}')dnl",
            "FEATURE(`accept_unresolvable_domains')dnl",
            *(f"RELAY_DOMAIN(`{domain}')dnl" for domain in relay_domains),
            "FEATURE(`no_default_msa')dnl",  # no second listener on port 587
            f"DAEMON_OPTIONS(`Port={self.port}, Addr=127.0.0.1, Name=MTA')dnl",
            milter_line.strip(),
            "MAILER(`smtp')dnl",
            "",
        ])

    def command(self, *arguments: str) -> list[str]:
        """`sendmail -C our.cf ARGUMENTS` in its namespace."""
        libraries = next(SENDMAIL_DIR.glob("usr/lib/*/libwrap.so.0")).parent
        return ["unshare", "--mount", "sh", "-c", NAMESPACE, "sh", str(self.directory),
                "env", f"LD_LIBRARY_PATH={libraries}", str(BINARY), "-C", str(self.cf),
                *arguments]

    def run(self, *arguments: str) -> str:
        """A one-off sendmail command (the queue, a release): what it printed."""
        done = subprocess.run(self.command(*arguments), capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, check=False)
        assert done.returncode == 0, f"sendmail {' '.join(arguments)}: {done.stderr}"
        return done.stdout

    def start(self) -> None:
        with self.output.open("wb") as output:
            self.process = subprocess.Popen(self.command("-bD"), stdout=output, stderr=output)
        try:
            wait_listening(self.port, self.process, self.output)
        except RuntimeError:
            self.stop()
            raise

    def quarantined(self) -> str:
        """`mailq -qQ`: the quarantined messages and their reasons."""
        return self.run("-bp", "-qQ")

    def log(self) -> str:
        return "\n".join(self.syslog.lines) + "\n" + tail(self.output)

    def stop(self) -> None:
        stop_process(self.process)
        self.syslog.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
