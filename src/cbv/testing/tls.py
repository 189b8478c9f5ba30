"""The self-signed mx.test certificate shipped for STARTTLS tests (valid 100 years)."""

import functools
import ssl
from importlib.resources import as_file, files


@functools.cache
def server_context() -> ssl.SSLContext:
    """Built once: loading the key on every STARTTLS would slow down busy tests."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certs = files("cbv.testing") / "certs"
    with as_file(certs / "cert.pem") as cert, as_file(certs / "key.pem") as key:
        context.load_cert_chain(cert, key)
    return context
