"""The worker's jobs (procrastinate, in PostgreSQL; ``./entrypoint.sh worker``).

- ``tick`` (every minute, ``SCHEDULER_CRON``): deliveries of due subscriptions are created and
  deferred; alerts are evaluated. procrastinate defers a periodic job once per timestamp
  across all workers, and the work itself is safe to repeat (``outcomes.deliveries``).
- ``send_delivery`` / ``send_alert_event``: one message to its channels; retried by the
  services with backoff and recorded (``outcomes.notifications``).
- ``retry_stalled_jobs`` (every minute): jobs whose worker stopped sending heartbeats
  (SIGKILL, a lost node) for WORKER_STALLED_AFTER_SECONDS are run again elsewhere; the
  services finish what the dead worker started without repeating what it did.
- ``prune_jobs`` (daily): jobs that ended failed, cancelled or aborted more than
  WORKER_FAILED_JOBS_KEEP_DAYS ago are deleted (successful ones are deleted when they end), so
  ``procrastinate_jobs`` stays bounded however long the worker runs; the deliveries and alert
  events keep the record of what was sent.
"""

from __future__ import annotations

import logging

from django.conf import settings
from procrastinate.contrib.django import app

from outcomes import alerting, deliveries

log = logging.getLogger(__name__)


@app.periodic(cron=settings.SCHEDULER_CRON, periodic_id="tick")
@app.task(name="outcomes.tick", queue="schedules", queueing_lock="outcomes.tick", pass_context=False)
def tick(timestamp: int) -> None:
    created = deliveries.schedule_due()
    events = alerting.evaluate_alerts()
    if created or events:
        log.info("scheduled", extra={"deliveries": created, "alert_events": events})


@app.task(name=deliveries.SEND_TASK, queue="deliveries")
def send_delivery(delivery_id: int) -> None:
    deliveries.send_delivery(delivery_id)


@app.task(name=alerting.SEND_TASK, queue="deliveries")
def send_alert_event(event_id: int) -> None:
    alerting.send_alert_event(event_id)


@app.periodic(cron=settings.SCHEDULER_CRON, periodic_id="stalled")
@app.task(name="outcomes.retry_stalled_jobs", queue="schedules", queueing_lock="outcomes.stalled", pass_context=True)
async def retry_stalled_jobs(context, timestamp: int) -> None:
    manager = context.app.job_manager
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=settings.WORKER_STALLED_AFTER_SECONDS):
        log.warning("retrying a stalled job", extra={"job": job.id, "task": job.task_name})
        await manager.retry_job(job)


@app.periodic(cron="17 3 * * *", periodic_id="prune_jobs")
@app.task(name="outcomes.prune_jobs", queue="schedules", queueing_lock="outcomes.prune_jobs", pass_context=True)
async def prune_jobs(context, timestamp: int) -> None:
    await context.app.job_manager.delete_old_jobs(
        nb_hours=settings.WORKER_FAILED_JOBS_KEEP_DAYS * 24,
        include_failed=True,
        include_cancelled=True,
        include_aborted=True,
    )
