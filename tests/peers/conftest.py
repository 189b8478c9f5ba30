from tests.peers.mail_world import mail_world, started  # noqa: F401 - fixtures
from tests.peers.redis_server import (  # noqa: F401 - fixtures
    redis_cluster,
    redis_cluster_url,
    redis_own,
    redis_standalone,
    redis_url,
)
