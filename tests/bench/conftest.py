from tests.peers.redis_server import (  # noqa: F401 - fixtures
    redis_standalone,
    redis_url,
)
