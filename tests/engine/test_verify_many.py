"""verify_many shares SMTP sessions per domain without changing any verdict."""

from __future__ import annotations

from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result
from cbv.testing import MXScript, Reply
from tests.world import World

OK = Reply(250, "2.1.5 Ok")
BLOCKED = Reply(550, "5.7.1 <{addr}>: policy says no")


def addresses() -> list[str]:
    return [f"user{i}@example.test" for i in range(12)]


def script() -> MXScript:
    return MXScript(rcpt=[("user1*@example.test", BLOCKED), ("user*[02468]@example.test", OK)])


def summary(verdicts: list) -> list[tuple]:  # type: ignore[type-arg]
    return [(v.address, v.result, v.reason, v.stage, v.catch_all,
             v.reply.code if v.reply else None) for v in verdicts]


async def test_shared_sessions_give_the_same_verdicts_as_one_session_each(world: World) -> None:
    farm = await world.mx("example.test", {"127.0.0.2": script()})
    config = world.config(callout={"max_rcpts_per_session": 5})
    async with Verifier(config) as verifier:
        shared = await verifier.verify_many(addresses())
        single = [await verifier.verify(a, use_cache=False) for a in addresses()]
    assert summary(shared) == summary(single)
    assert [v.reason for v in shared[:3]] == [Reason.ACCEPTED, Reason.POLICY_REJECTION,
                                              Reason.ACCEPTED]
    mx = farm.servers["127.0.0.2"]
    shared_sessions = mx.log[: len(mx.log) - len(addresses())]
    assert len(shared_sessions) == 3  # 12 addresses, a probe + 4 addresses per session
    for session in shared_sessions:
        assert len(session.rcpts) <= 5
        assert sum(c == "RSET" for c in session.commands) == len(session.rcpts) - 2


async def test_results_keep_input_order_and_duplicates(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": script()})
    inputs = ["user2@example.test", "bad address", "user3@example.test", "user2@example.test"]
    async with Verifier(world.config()) as verifier:
        verdicts = await verifier.verify_many(inputs)
    assert [v.address for v in verdicts] == ["user2@example.test", "bad address",
                                             "user3@example.test", "user2@example.test"]
    assert [v.reason for v in verdicts] == [Reason.ACCEPTED, Reason.BAD_SYNTAX,
                                            Reason.MAILBOX_UNKNOWN, Reason.ACCEPTED]
    assert world.server("127.0.0.2").rcpts.count("user2@example.test") == 1


async def test_many_domains_concurrently(world: World) -> None:
    farm = await world.mx("a.test", {"127.0.0.2": MXScript(catch_all=True)})
    for name in ("b.test", "c.test"):
        world.dns.add_mx(name, [(10, "mx1.a.test")])
    world.dns.set_nxdomain("gone.test")
    inputs = [f"x{i}@{d}" for i in range(4) for d in ("a.test", "b.test", "c.test", "gone.test")]
    async with Verifier(world.config(farm.port)) as verifier:
        verdicts = await verifier.verify_many(inputs)
    by_domain = {v.address.split("@")[1]: v.result for v in verdicts}
    assert by_domain == {"a.test": Result.PASS, "b.test": Result.PASS, "c.test": Result.PASS,
                         "gone.test": Result.FAIL}
    assert len(verdicts) == len(inputs)


async def test_null_sender_refusal_carries_across_shared_session(world: World) -> None:
    refuse_null = [("", Reply(550, "5.7.1 no null sender"))]
    await world.mx("example.test", {"127.0.0.2": MXScript(mail=refuse_null, catch_all=True)})
    async with Verifier(world.config()) as verifier:
        verdicts = await verifier.verify_many([f"u{i}@example.test" for i in range(3)])
    assert all(v.result is Result.PASS for v in verdicts)
    mails = [c for c in world.server("127.0.0.2").commands if c.startswith("MAIL")]
    assert mails[0] == "MAIL FROM:<>"
    assert all(m.startswith("MAIL FROM:<postmaster@") for m in mails[1:])


async def test_drop_at_rcpt_in_a_shared_session_keeps_others_on_the_same_host(
    world: World,
) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(drop_at="rcpt"),
                                    "127.0.0.3": MXScript(catch_all=True)})
    async with Verifier(world.config(callout={"detect_catch_all": False})) as verifier:
        verdicts = await verifier.verify_many([f"u{i}@example.test" for i in range(3)])
    assert [v.reason for v in verdicts] == [Reason.CONNECTION_FAILED] * 3
    assert {v.mx for v in verdicts} == {"mx1.example.test"}
    assert world.server("127.0.0.3").connections == 0
