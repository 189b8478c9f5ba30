"""cbv: SMTP callback verification for mail servers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cbv.model import Reason, Result, SmtpReply, Stage, Verdict

__all__ = ["Reason", "Result", "SmtpReply", "Stage", "Verdict", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The model's names, imported when first asked for: the model needs pydantic, which
    `cbv --help` and the other quick commands can do without."""
    if name in __all__:
        from cbv import model

        return getattr(model, name)
    raise AttributeError(f"module 'cbv' has no attribute {name!r}")
