"""`cbv doctor`: what a mail administrator checks before pointing mail at a verifier."""
