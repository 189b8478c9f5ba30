"""Bulk verification jobs (docs/jobs.md): submitted lists verified by every `cbv serve`
with `[jobs] enabled = true`, through one `JobQueue` on Redis Streams or SQLite."""
