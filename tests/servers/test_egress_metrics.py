"""Each egress's callouts, refusals, failures and state, in /metrics and the status data."""

from __future__ import annotations

from cbv.engine.verifier import Verifier
from cbv.servers.metrics import Telemetry
from cbv.testing import MXScript, Reply
from tests.world import World

BLOCKED = Reply(554, "5.7.1 client host blocked using zen.spamhaus.org")


async def test_metrics_and_status_show_each_egress(world: World) -> None:
    farm = await world.mx("one.test", {"127.0.0.2": MXScript(banner=BLOCKED),
                                       "127.0.0.3": MXScript(catch_all=True)})
    world.dns.add_a("mx.two.test", "127.0.0.3")
    world.dns.add_mx("two.test", [(10, "mx.two.test")])
    telemetry = Telemetry()
    config = world.config(farm.port, callout={
        "egress": [{"name": "listed", "source_address": "127.0.0.51"},
                   {"name": "spare", "source_address": "127.0.0.52"}],
        "egress_routes": {"one.test": "listed", "*": "spare"}, "egress_rest_after": 1})
    async with Verifier(config, observer=telemetry.engine(config)) as verifier:
        await verifier.verify("x@one.test", use_cache=False)
        await verifier.verify("x@two.test", use_cache=False)
        await verifier.verify("y@one.test", use_cache=False)
    text = telemetry.exposition().decode()
    assert 'cbv_egress_callouts_total{egress="listed",event="callout"} 1.0' in text
    assert 'cbv_egress_callouts_total{egress="listed",event="refused"} 1.0' in text
    assert 'cbv_egress_callouts_total{egress="listed",event="unavailable"} 1.0' in text
    assert 'cbv_egress_callouts_total{egress="spare",event="callout"} 1.0' in text
    assert 'cbv_egress_state{cbv_egress_state="resting",egress="listed"} 1.0' in text
    assert 'cbv_egress_state{cbv_egress_state="active",egress="spare"} 1.0' in text
    status = {e["name"]: e for e in telemetry.history.snapshot()["egresses"]}
    assert status["listed"] == {"name": "listed", "state": "resting", "callouts": 1,
                                "refusals": 1, "failures": 0, "unavailable": 1}
    assert status["spare"]["state"] == "active" and status["spare"]["callouts"] == 1
