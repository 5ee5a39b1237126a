"""The run failure sensor: tells Slack/SNS when any run of this code location fails, with the step errors."""

from __future__ import annotations

from typing import cast

import dagster as dg

from pendo_sync.dagster.alerts import Alert, AlertsResource
from pendo_sync.dagster.assets import SYNC_TAG

# Enough to recognise the error in a chat message; the full stack traces are on the run's page.
MAX_STEP_ERRORS = 3
MAX_ERROR_CHARS = 1000


def step_error(event: dg.DagsterEvent) -> str:
    """What went wrong in a failed step, in the words of the code that raised it."""
    data = event.event_specific_data
    failure = getattr(data, "user_failure_data", None)
    if failure is not None and failure.description:
        return failure.description.strip()[:MAX_ERROR_CHARS]
    error = getattr(data, "error", None)
    if error is None:
        return ""
    # An exception raised in an op arrives wrapped in DagsterExecutionStepExecutionError ("Error occurred
    # while executing op ..."); the user's own exception is at the end of the cause chain.
    while error.cause is not None:
        error = error.cause
    return error.message.strip()[:MAX_ERROR_CHARS]


def failure_text(context: dg.RunFailureSensorContext) -> str:
    """The alert's body: job, run, sync, the run's failure message and the first step errors."""
    run = context.dagster_run
    lines = [f"Job: {run.job_name}", f"Run: {run.run_id}"]
    sync = run.tags.get(SYNC_TAG)
    if sync:
        lines.append(f"Sync: {sync}")
    if context.failure_event.message:
        lines.append(f"Failure: {context.failure_event.message}")
    for event in context.get_step_failure_events()[:MAX_STEP_ERRORS]:
        error = step_error(event)
        if error:
            lines.append(f"Step {event.step_key}: {error}")
    return "\n".join(lines)


def build_run_failure_sensor() -> dg.RunStatusSensorDefinition:
    """A sensor, running by default, that alerts on every failed run of this code location."""

    @dg.run_failure_sensor(
        name="pendo_sync_run_failure",
        monitor_all_code_locations=False,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends an alert (Slack and/or SNS, secrets redacted) for each failed run of this code "
        "location, with the job, the sync, the failure and the first step errors, and a link to the run.",
    )
    def pendo_sync_run_failure(
        context: dg.RunFailureSensorContext, pendo_sync_alerts: AlertsResource
    ) -> dg.SkipReason | None:
        alerts = pendo_sync_alerts
        if not alerts.enabled():
            return dg.SkipReason(f"alerting is off: {alerts.describe()}")
        run = context.dagster_run
        problems = alerts.send(
            Alert(
                title=f"pendo_sync: run of {run.job_name} failed",
                text=failure_text(context),
                sync=run.tags.get(SYNC_TAG, ""),
                run_id=run.run_id,
                link=alerts.run_link(run.run_id),
            )
        )
        for problem in problems:
            context.log.warning(f"failure alert not delivered: {problem}")
        return None

    # The decorator is typed as returning a SensorDefinition; at run time it is a RunStatusSensorDefinition.
    return cast(dg.RunStatusSensorDefinition, pendo_sync_run_failure)
