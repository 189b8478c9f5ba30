"""What a callout in flight keeps: structural, not timed (the CPU and collector time it
saves are in docs/benchmarks.md)."""

from __future__ import annotations

from types import FunctionType

import pytest

from cbv.callout.dialogue import Dialogue
from cbv.callout.runner import CalloutRunner
from cbv.callout.session import run_session
from cbv.dns.resolver import DnspythonResolver
from cbv.engine.limited_callout import LimitedCallout
from cbv.engine.shared_callouts import SharedCallouts

# The frames suspended for a whole callout, and the ones every callout runs through.
IN_FLIGHT_AND_EVERY_CALLOUT = [
    SharedCallouts._lead,
    LimitedCallout.run,
    CalloutRunner.run_report,
    CalloutRunner._report,
    run_session,
    Dialogue.steps,
    DnspythonResolver.mx,
    DnspythonResolver.addresses_of,
]


@pytest.mark.parametrize("function", IN_FLIGHT_AND_EVERY_CALLOUT,
                         ids=lambda f: f.__qualname__)
def test_the_callout_path_makes_no_cell_objects(function: FunctionType) -> None:
    """A local that a comprehension or lambda reads becomes a cell, an object made on
    every call whether the comprehension runs or not, and kept while the frame waits:
    four of them per callout in flight cost the collector time in every generation."""
    assert function.__code__.co_cellvars == ()
