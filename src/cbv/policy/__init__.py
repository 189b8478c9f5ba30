"""Site policy: exclusions, actions and per-domain rules, pure and free of I/O."""

from cbv.policy.context import RequestContext, RequestKind
from cbv.policy.decision import HEADER, Action, Decision
from cbv.policy.site import Check, SitePolicy, Skip

__all__ = [
    "HEADER",
    "Action",
    "Check",
    "Decision",
    "RequestContext",
    "RequestKind",
    "SitePolicy",
    "Skip",
]
