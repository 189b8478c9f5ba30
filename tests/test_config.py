"""The config model: its defaults, one-line errors that name the key for unknown keys and
for every validator, and domain keys normalised as addresses are (IDNA, case, dot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cbv.address import parse_address
from cbv.config import Config, ConfigError, config_from_dict, domain_key, load_config
from cbv.endpoint import Endpoint


def refusal(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as refused:
        config_from_dict(data)
    message = str(refused.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    config = config_from_dict({})
    assert config == Config()
    assert config.dns.nameservers == []
    assert config.callout.port == 25
    assert config.callout.mail_from == ""
    assert config.callout.map == {} and config.callout.routes == {}
    assert config.cache.location().kind.value == "sqlite"
    assert config.limits.domain_rate("example.test") == config.limits.domain_per_minute
    assert config.server.endpoints() == {"policy": Endpoint("127.0.0.1", 10040),
                                         "smtpcbd": Endpoint("127.0.0.1", 4571)}
    assert config.policy.phase == "mailfrom" and config.policy.on_fail == "reject"
    assert config.policy.local_networks == ["127.0.0.0/8", "::1/128"]
    assert config.http.token == ""


@pytest.mark.parametrize(("data", "message"), [
    ({"colour": "red"}, "config: colour: unknown key"),
    ({"callout": {"prot": 25}}, "config: callout.prot: unknown key"),
    ({"policy": {"domains": {"example.test": {"on_fial": "reject"}}}},
     "config: policy.domains.example.test.on_fial: unknown key"),
    ({"policy": {"replies": {"rejct": "550 no"}}}, "config: policy.replies.rejct: unknown key"),
])
def test_unknown_keys_are_named(data: dict[str, Any], message: str) -> None:
    assert refusal(data) == message


def test_several_errors_are_counted_after_the_first() -> None:
    assert refusal({"colour": "red", "size": 1}) == "config: colour: unknown key (and 1 more)"


IDN = "Bücher.Example."
A_LABEL = "xn--bcher-kva.example"


def test_domain_keys_are_normalised_like_addresses() -> None:
    assert domain_key(IDN) == A_LABEL
    assert domain_key(" *.Bücher.example ", wildcard=True) == "*." + A_LABEL
    config = config_from_dict({
        "callout": {"map": {IDN: "MX.Bücher.example"}, "routes": {IDN: ["127.0.0.2:2525"]}},
        "limits": {"domain_overrides": {IDN: 5}},
        "policy": {"domains": {IDN: {"on_fail": "accept"}, "*.bücher.example": {}}},
    })
    domain = parse_address("alice@bücher.example").domain
    assert domain == A_LABEL
    assert config.callout.map.get(domain) == "mx." + A_LABEL
    assert config.callout.route_targets(domain) == [("127.0.0.2", 2525)]
    assert config.limits.domain_rate(domain) == 5
    assert set(config.policy.domains) == {A_LABEL, "*." + A_LABEL}


@pytest.mark.parametrize(("data", "message"), [
    ({"dns": {"nameservers": ["ns.example.test"]}}, "config: dns.nameservers: 'ns.example.test' "
     "does not appear to be an IPv4 or IPv6 address"),
    ({"dns": {"nameservers": ["127.0.0.1:0"]}}, "config: dns.nameservers: '127.0.0.1:0': bad "
     "port '0'"),
    ({"dns": {"timeout": 0}}, "config: dns.timeout: Input should be greater than 0"),
    ({"dns": {"cache_size": -1}}, "config: dns.cache_size: Input should be greater than or "
     "equal to 0"),
    ({"callout": {"port": 65536}}, "config: callout.port: Input should be less than 65536"),
    ({"callout": {"helo_name": "my host"}}, "config: callout.helo_name: helo_name 'my host' is "
     "not a host name"),
    ({"callout": {"map": {"a..test": "b.test"}}}, "config: callout.map: bad domain label ''"),
    ({"callout": {"map": {"a.test": "b test"}}}, "config: callout.map: bad domain label 'b test'"),
    ({"callout": {"map": {"A.test": "b.test", "a.test.": "c.test"}}},
     "config: callout.map: 'A.test' and 'a.test.' are the same domain"),
    ({"callout": {"routes": {"a.test": []}}}, "config: callout.routes: a route needs at least "
     "one host"),
    ({"callout": {"routes": {"a.test": ["[mx]:25"]}}}, "config: callout.routes: '[mx]:25': 'mx' "
     "is not an IPv6 address"),
    ({"callout": {"routes": {"*.a.test": ["127.0.0.2"]}}}, "config: callout.routes: bad domain "
     "label '*'"),
    ({"security": {"allowed_target_networks": ["10.0.0.0/33"]}},
     "config: security.allowed_target_networks: '10.0.0.0/33' does not appear to be an IPv4 or "
     "IPv6 network"),
    ({"cache": {"url": "mysql://db"}}, "config: cache.url: unsupported scheme 'mysql'; use "
     "memory://, sqlite:///path, redis://host:port/db or redis+cluster://host:port,..."),
    ({"cache": {"url": "memory://", "path": "/tmp/x"}}, "config: cache: set cache.url or "
     "cache.path, not both"),
    ({"cache": {"pass_ttl": 10, "pass_refresh": 20}}, "config: cache: pass_refresh must not "
     "exceed pass_ttl"),
    ({"limits": {"domain_overrides": {"a.test": 0}}}, "config: limits.domain_overrides: rate for "
     "'a.test' must be above 0"),
    ({"limits": {"domain_overrides": {"a test": 1}}}, "config: limits.domain_overrides: bad "
     "domain label 'a test'"),
    ({"server": {"policy": "localhost"}}, "config: server.policy: 'localhost': expected "
     "host:port, [ipv6]:port or unix:/path"),
    ({"server": {"milter": "unix:milter.sock"}}, "config: server.milter: 'unix:milter.sock': a "
     "unix socket needs an absolute path"),
    ({"server": {"http": "0.0.0.0:8080"}}, "config: http.token: required when server.http "
     "listens beyond loopback (0.0.0.0:8080)"),
    ({"policy": {"replies": {"reject": "450 4.1.7 later"}}}, "config: policy.replies.reject: "
     "'450 4.1.7 later': the code must be 5xx"),
    ({"policy": {"replies": {"defer": "550 no"}}}, "config: policy.replies.defer: '550 no': the "
     "code must be 4xx"),
    ({"policy": {"replies": {"reject": "550 5.1.7 a\r\nb"}}}, "config: policy.replies.reject: a "
     "reply text must be one line"),
    ({"policy": {"replies": {"reject": "five hundred"}}}, "config: policy.replies.reject: 'five "
     "hundred' is not 'CODE [X.Y.Z] text'"),
    ({"policy": {"replies": {"reject": "550 4.1.7 no"}}}, "config: policy.replies.reject: '550 "
     "4.1.7 no': the enhanced code's class differs from the reply code's"),
    ({"policy": {"replies": {"reject": "550 {who}"}}}, "config: policy.replies.reject: '550 "
     "{who}': unknown placeholder {who} (known: {address}, {reason}, {why})"),
    ({"policy": {"replies": {"error": "451 {address"}}}, "config: policy.replies.error: '451 "
     "{address': expected '}' before end of string"),
    ({"policy": {"replies": {"quarantine": " "}}}, "config: policy.replies.quarantine: the "
     "quarantine reason must be one non-empty line"),
    ({"policy": {"subject_tag": ""}}, "config: policy.subject_tag: the subject tag must be one "
     "non-empty line"),
    ({"policy": {"allowlist": ["news letter@a.test"]}}, "config: policy.allowlist: 'news "
     "letter@a.test' is not an address, domain or pattern"),
    ({"policy": {"local_domains": ["a..test"]}}, "config: policy.local_domains: bad domain "
     "label ''"),
    ({"policy": {"local_networks": ["localhost"]}}, "config: policy.local_networks: "
     "'localhost' does not appear to be an IPv4 or IPv6 network"),
    ({"policy": {"domains": {"*.": {}}}}, "config: policy.domains: empty domain"),
    ({"policy": {"domains": {"a.test": {"subject_tag": "a\nb"}}}},
     "config: policy.domains.a.test.subject_tag: the subject tag must be one non-empty line"),
    ({"http": {"token": "short"}}, "config: http.token: the token must be at least 16 printable "
     "ASCII characters, without spaces"),
    ({"log": {"level": "loud"}}, "config: log.level: Input should be 'debug', 'info', 'warning' "
     "or 'error'"),
])
def test_every_validator_names_the_key_in_one_line(data: dict[str, Any], message: str) -> None:
    assert refusal(data) == message


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cbv.toml: no such file$"):
        load_config(tmp_path / "cbv.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[callout\n")
    with pytest.raises(ConfigError, match=r"broken.toml: invalid TOML: "):
        load_config(broken)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[callout]\nhelo_name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1.toml: cannot read: "):
        load_config(latin1)


def test_the_config_file_is_found_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "cbv.toml"
    chosen.write_text('[callout]\nmap = {"Bücher.example" = "b.example"}\n')
    monkeypatch.setenv("CBV_CONFIG", str(chosen))
    assert load_config().callout.map == {A_LABEL: "b.example"}
