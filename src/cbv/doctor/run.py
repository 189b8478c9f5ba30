"""Every check of `cbv doctor`, per egress and then for the whole configuration."""

from __future__ import annotations

import asyncio

from cbv.config import Config
from cbv.dns.resolver import Resolver
from cbv.doctor.checks import (
    Finding,
    cache_usable,
    greets_through,
    helo_resolves,
    not_listed,
    reverse_matches,
    sender_accepted,
)
from cbv.doctor.lookups import DoctorDns
from cbv.egress.table import Egress, egresses_from_config


async def _egress_findings(egress: Egress, config: Config, dns: DoctorDns) -> list[Finding]:
    helo, reverse, listed, greeting = await asyncio.gather(
        helo_resolves(egress, dns), reverse_matches(egress, dns),
        not_listed(egress, dns, config.doctor.dnsbl_zones),
        greets_through(egress, dns, config.doctor))
    return [helo, reverse, *listed, greeting]


async def examine(config: Config, dns: DoctorDns, resolver: Resolver) -> list[Finding]:
    """Findings in a stable order: each egress as configured, the sender, the cache."""
    per_egress = await asyncio.gather(*(
        _egress_findings(egress, config, dns) for egress in egresses_from_config(config.callout)))
    sender, cache = await asyncio.gather(sender_accepted(config, resolver), cache_usable(config))
    return [finding for findings in per_egress for finding in findings] + [sender, cache]
