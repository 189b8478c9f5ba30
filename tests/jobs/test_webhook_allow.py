"""Which webhook URLs an operator's `[jobs] webhook_allow` admits: part by part, never by
string prefix alone."""

from __future__ import annotations

import pytest

from cbv.config import ConfigError, config_from_dict
from cbv.jobs.service import webhook_allowed

ALLOW = ["https://hooks.example.test/cbv/", "http://127.0.0.1", "http://[::1]:8080/"]


@pytest.mark.parametrize("url", [
    "https://hooks.example.test/cbv/",
    "https://hooks.example.test/cbv/done?job=1",
    "https://HOOKS.example.test/cbv/x",
    "https://hooks.example.test:443/cbv/x",
    "https://hooks.example.test:8443/cbv/x",
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/anything",
    "http://[::1]:8080/x",
])
def test_admitted(url: str) -> None:
    assert webhook_allowed(url, ALLOW)


@pytest.mark.parametrize("url", [
    "https://hooks.example.test.evil.test/cbv/",
    "https://hooks.example.test@evil.test/cbv/",
    "http://hooks.example.test/cbv/",
    "https://hooks.example.test/other/",
    "https://127.0.0.1/",
    "http://127.0.0.2/",
    "http://127.0.0.1:99999/",
    "http://[::1]/",
    "http://[::1]:8081/",
])
def test_refused(url: str) -> None:
    assert not webhook_allowed(url, ALLOW)


def test_nothing_is_admitted_by_default() -> None:
    assert not webhook_allowed("http://127.0.0.1/", config_from_dict({}).jobs.webhook_allow)


def test_a_bad_prefix_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match="a webhook prefix is http") as raised:
        config_from_dict({"jobs": {"webhook_allow": ["ftp://hooks.example.test/"]}})
    assert "\n" not in str(raised.value)
