"""Where callouts leave from: egresses (a source address or a SOCKS5 proxy), their routes,
their health, and the connections opened through them (docs/egress.md)."""
