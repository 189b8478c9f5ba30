"""What one client did during one connection to a ScriptedMX."""

from dataclasses import dataclass, field


@dataclass
class SessionLog:
    """Commands are kept verbatim (minus CRLF) so tests can assert exactly what was sent.

    `closed_by_client` is set when the client hung up before the server ended the session
    (after QUIT the server closes, so a polite client leaves it False). `done` turns True
    once the server has finished with the connection.
    """

    peer: tuple[str, int]
    commands: list[str] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)
    tls: bool = False
    closed_by_client: bool = False
    done: bool = False
