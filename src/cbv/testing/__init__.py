"""Loopback stand-ins for DNS and remote MX servers, for testing cbv without a network."""

from cbv.testing.fake_dns import FakeDNS
from cbv.testing.mx_farm import MXFarm, start_farm
from cbv.testing.mx_script import MXScript
from cbv.testing.replies import RawReply, Reply
from cbv.testing.scripted_mx import ScriptedMX
from cbv.testing.session_log import SessionLog

__all__ = [
    "FakeDNS",
    "MXFarm",
    "MXScript",
    "RawReply",
    "Reply",
    "ScriptedMX",
    "SessionLog",
    "start_farm",
]
