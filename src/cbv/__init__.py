"""cbv: SMTP callback verification for mail servers."""

from cbv.model import Reason, Result, SmtpReply, Stage, Verdict

__all__ = ["Reason", "Result", "SmtpReply", "Stage", "Verdict", "__version__"]

__version__ = "0.1.0"
