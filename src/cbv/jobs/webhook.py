"""The call a job makes once done: its status POSTed to the URL its submitter gave, and
nowhere else (no redirect is followed)."""

from __future__ import annotations

import logging

from cbv.jobs.model import JobSpec, JobStatus

LOG = logging.getLogger("cbv.jobs")
TIMEOUT = 10.0


async def notify(spec: JobSpec, status: JobStatus) -> None:
    if not spec.webhook:
        return
    import httpx  # a large import, made only by a daemon whose jobs have a webhook

    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False,
                                     trust_env=False) as client:
            answer = await client.post(spec.webhook, content=status.model_dump_json(),
                                       headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        LOG.warning("job %s: webhook %s failed: %s", spec.id, spec.webhook, exc)
        return
    if answer.status_code >= 300:
        LOG.warning("job %s: webhook %s answered %d", spec.id, spec.webhook,
                    answer.status_code)
