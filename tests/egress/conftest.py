from tests.egress.socks_server import socks_factory  # noqa: F401 - fixture
