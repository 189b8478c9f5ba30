"""SMTP replies a ScriptedMX can send, well-formed or deliberately not."""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """A reply whose text may name {addr} and {name}, filled in when sent."""

    code: int
    text: str | Sequence[str] = ""

    @property
    def lines(self) -> tuple[str, ...]:
        if isinstance(self.text, str):
            return (self.text,)
        return tuple(self.text) or ("",)

    @property
    def positive(self) -> bool:
        """Whether the server's state advances (greeted, transaction open, TLS begins)."""
        return 200 <= self.code < 400

    def render(self, addr: str = "", name: str = "") -> bytes:
        lines = [line.replace("{addr}", addr).replace("{name}", name) for line in self.lines]
        out = [f"{self.code:03d}-{line}" for line in lines[:-1]]
        last = lines[-1]
        out.append(f"{self.code:03d} {last}" if last else f"{self.code:03d}")
        return "".join(f"{line}\r\n" for line in out).encode()


@dataclass(frozen=True)
class RawReply:
    """Exact bytes, for hostile servers: bad codes, bare LFs, half lines, garbage."""

    data: bytes

    @property
    def positive(self) -> bool:
        """The bytes carry no code to act on, so the dialogue moves on as if accepted."""
        return True

    def render(self, addr: str = "", name: str = "") -> bytes:
        return self.data


AnyReply = Reply | RawReply
