"""Alerts: exact Slack and SNS payloads against local servers, redaction, a failing destination, the run
failure sensor end to end, and settings from the environment."""

from __future__ import annotations

import logging
import socket

import dagster as dg
import pytest

from pendo_sync.dagster.alerts import Alert, AlertsResource, alerts_from_env
from pendo_sync.dagster.failure_sensor import build_run_failure_sensor
from pendo_sync.secrets import redact
from pendo_sync_tests.dagster.conftest import MotoSns, SlackServer

ENV_NAMES = [
    "PENDO_SYNC_SLACK_WEBHOOK_URL",
    "PENDO_SYNC_SLACK_TOKEN",
    "PENDO_SYNC_SLACK_CHANNEL",
    "PENDO_SYNC_SNS_TOPIC_ARN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "PENDO_SYNC_SNS_ENDPOINT_URL",
    "PENDO_SYNC_UI_URL",
]


@pytest.fixture(autouse=True)
def integration_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", "secret-key-123")
    return "secret-key-123"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key secret-key-123 failed", "key *** failed"),
        ("postgresql://u:hunter2@db/x", "postgresql://u:***@db/x"),
        ("redshift+psycopg2://etl:p4ss@host:5439/dw?x=1", "redshift+psycopg2://etl:***@host:5439/dw?x=1"),
        (
            "see https://hooks.slack.com/services/T0/B0/XyZ now",
            "see https://hooks.slack.com/services/*** now",
        ),
        ("token xoxb-1234-abcd", "token xoxb-***"),
        # A port or a user without a password is not a secret.
        ("http://host:8080/a/b@c and https://me@host/x", "http://host:8080/a/b@c and https://me@host/x"),
    ],
)
def test_redact_hides_secrets(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_ignores_an_empty_integration_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENDO_INTEGRATION_KEY", "")
    assert redact("nothing secret") == "nothing secret"


def test_slack_webhook_gets_the_exact_redacted_text(slack_server: SlackServer) -> None:
    alerts = AlertsResource(slack_webhook_url=f"{slack_server.url}/services/T0/B0/xyz")
    problems = alerts.send(
        Alert(
            title="pendo_sync: accounts rejected 12.0% of rows",
            text="Key secret-key-123 refused; warehouse postgresql://u:hunter2@db/x",
            link="http://127.0.0.1:3000/runs/r1",
        )
    )
    assert problems == []
    assert slack_server.messages == [
        {
            "text": "*pendo_sync: accounts rejected 12.0% of rows*\n"
            "Key *** refused; warehouse postgresql://u:***@db/x\n"
            "http://127.0.0.1:3000/runs/r1"
        }
    ]
    assert slack_server.requests[0].path == "/services/T0/B0/xyz"
    sent = slack_server.messages[0]["text"]
    assert "secret-key-123" not in sent
    assert "hunter2" not in sent


def test_slack_api_posts_to_the_channel_with_the_token(slack_server: SlackServer) -> None:
    slack_server.response_body = '{"ok": true}'
    alerts = AlertsResource(
        slack_token="xoxb-1-abc", slack_channel="#data-alerts", slack_api_url=slack_server.url
    )
    assert alerts.send(Alert(title="t", text="body")) == []
    [request] = slack_server.requests
    assert request.path == "/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-1-abc"
    assert request.body == {"channel": "#data-alerts", "text": "*t*\nbody"}


def test_slack_api_refusal_is_a_problem(slack_server: SlackServer) -> None:
    slack_server.response_body = '{"ok": false, "error": "channel_not_found"}'
    alerts = AlertsResource(slack_token="xoxb-1-abc", slack_channel="#nope", slack_api_url=slack_server.url)
    assert alerts.send(Alert(title="t", text="body")) == [
        "Slack chat.postMessage: Slack refused the message: channel_not_found"
    ]


def test_sns_delivers_subject_message_and_attributes(moto_sns: MotoSns) -> None:
    alerts = AlertsResource(
        sns_topic_arn=moto_sns.topic_arn, aws_region=moto_sns.region, sns_endpoint_url=moto_sns.endpoint_url
    )
    long_title = "pendo_sync: run of sync_accounts failed\nwith " + "x" * 120
    problems = alerts.send(
        Alert(
            title=long_title,
            text="Sync: accounts\nkey secret-key-123 at postgresql://u:hunter2@db/x",
            sync="accounts",
            run_id="run-42",
            link="http://ui/runs/run-42",
        )
    )
    assert problems == []
    [notification] = moto_sns.received()
    assert notification["Type"] == "Notification"
    assert notification["TopicArn"] == moto_sns.topic_arn
    assert notification["Subject"] == ("pendo_sync: run of sync_accounts failed with " + "x" * 120)[:100]
    assert len(notification["Subject"]) == 100
    assert (
        notification["Message"] == "Sync: accounts\nkey *** at postgresql://u:***@db/x\nhttp://ui/runs/run-42"
    )
    assert notification["MessageAttributes"] == {
        "sync": {"Type": "String", "Value": "accounts"},
        "run_id": {"Type": "String", "Value": "run-42"},
    }


def test_sns_without_sync_or_run_sends_no_attributes(moto_sns: MotoSns) -> None:
    alerts = AlertsResource(
        sns_topic_arn=moto_sns.topic_arn, aws_region=moto_sns.region, sns_endpoint_url=moto_sns.endpoint_url
    )
    assert alerts.send(Alert(title="pendo_sync: schema drift", text="a: column b added")) == []
    [notification] = moto_sns.received()
    assert (notification["Subject"], notification["Message"]) == (
        "pendo_sync: schema drift",
        "a: column b added",
    )
    assert notification.get("MessageAttributes", {}) == {}


def test_failing_slack_is_reported_and_sns_still_delivered(
    slack_server: SlackServer, moto_sns: MotoSns, caplog: pytest.LogCaptureFixture
) -> None:
    slack_server.status = 500
    slack_server.response_body = "internal error"
    alerts = AlertsResource(
        slack_webhook_url=slack_server.url,
        sns_topic_arn=moto_sns.topic_arn,
        aws_region=moto_sns.region,
        sns_endpoint_url=moto_sns.endpoint_url,
    )
    with caplog.at_level(logging.WARNING, logger="pendo_sync.dagster.alerts"):
        problems = alerts.send(Alert(title="pendo_sync: boom", text="details"))
    assert problems == ["Slack webhook: HTTP 500 internal error"]
    assert len(slack_server.messages) == 1
    assert [(n["Subject"], n["Message"]) for n in moto_sns.received()] == [("pendo_sync: boom", "details")]
    assert [r.getMessage() for r in caplog.records if r.name == "pendo_sync.dagster.alerts"] == [
        "alert 'pendo_sync: boom' not delivered: Slack webhook: HTTP 500 internal error"
    ]


def test_unreachable_slack_does_not_raise_and_sns_still_delivered(moto_sns: MotoSns) -> None:
    alerts = AlertsResource(
        slack_webhook_url=f"http://127.0.0.1:{closed_port()}/services/T0/B0/secretpath",
        sns_topic_arn=moto_sns.topic_arn,
        aws_region=moto_sns.region,
        sns_endpoint_url=moto_sns.endpoint_url,
    )
    problems = alerts.send(Alert(title="t", text="x"))
    assert len(problems) == 1
    assert problems[0].startswith("Slack webhook: ConnectError: ")
    assert len(moto_sns.received()) == 1


def test_failing_sns_is_reported_and_slack_still_delivered(
    slack_server: SlackServer, moto_sns: MotoSns
) -> None:
    missing_topic = moto_sns.topic_arn + "-missing"
    alerts = AlertsResource(
        slack_webhook_url=slack_server.url,
        sns_topic_arn=missing_topic,
        aws_region=moto_sns.region,
        sns_endpoint_url=moto_sns.endpoint_url,
    )
    problems = alerts.send(Alert(title="t", text="x"))
    assert len(problems) == 1
    assert problems[0].startswith("SNS: NotFoundException: ")
    assert slack_server.messages == [{"text": "*t*\nx"}]


def test_enabled_describe_and_run_link() -> None:
    none = AlertsResource()
    assert not none.enabled()
    assert none.describe() == "no destinations (set PENDO_SYNC_SLACK_WEBHOOK_URL or PENDO_SYNC_SNS_TOPIC_ARN)"
    assert none.run_link("abc") == ""
    # A token without a channel cannot post anywhere.
    assert not AlertsResource(slack_token="xoxb-1").enabled()
    both = AlertsResource(
        slack_webhook_url="https://hooks.slack.com/services/T0/B0/secret",
        sns_topic_arn="arn:aws:sns:eu-west-1:123456789012:alerts",
        ui_base_url="http://127.0.0.1:3000/",
    )
    assert both.enabled()
    assert both.describe() == "Slack webhook, SNS arn:aws:sns:eu-west-1:123456789012:alerts"
    assert both.run_link("abc") == "http://127.0.0.1:3000/runs/abc"
    api = AlertsResource(slack_token="xoxb-1-secret", slack_channel="#alerts")
    assert api.describe() == "Slack channel #alerts"


@dg.op
def explode() -> None:
    raise Exception("boom postgresql://u:hunter2@h/db")


@dg.job
def failing_job() -> None:
    explode()


def test_run_failure_sensor_alerts_with_the_step_error(slack_server: SlackServer) -> None:
    sensor = build_run_failure_sensor()
    assert isinstance(sensor, dg.RunStatusSensorDefinition)
    assert sensor.name == "pendo_sync_run_failure"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.required_resource_keys == {"pendo_sync_alerts"}
    alerts = AlertsResource(slack_webhook_url=slack_server.url, ui_base_url="http://127.0.0.1:3000")
    with dg.instance_for_test() as instance:
        result = failing_job.execute_in_process(
            instance=instance, raise_on_error=False, tags={"pendo_sync/sync": "accounts"}
        )
        assert not result.success
        failure = result.get_run_failure_event()
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=failure,
            resources={"pendo_sync_alerts": alerts},
        )
        assert sensor(context) is None
    run_id = result.run_id
    assert slack_server.messages == [
        {
            "text": "*pendo_sync: run of failing_job failed*\n"
            "Job: failing_job\n"
            f"Run: {run_id}\n"
            "Sync: accounts\n"
            f"Failure: {failure.message}\n"
            "Step explode: Exception: boom postgresql://u:***@h/db\n"
            f"http://127.0.0.1:3000/runs/{run_id}"
        }
    ]
    assert "hunter2" not in slack_server.messages[0]["text"]


def test_run_failure_sensor_reports_a_dagster_failure_description(slack_server: SlackServer) -> None:
    @dg.op
    def refuse() -> None:
        raise dg.Failure(description="config does not match:\n- column x missing")

    @dg.job
    def refusing_job() -> None:
        refuse()

    sensor = build_run_failure_sensor()
    with dg.instance_for_test() as instance:
        result = refusing_job.execute_in_process(instance=instance, raise_on_error=False)
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
            resources={"pendo_sync_alerts": AlertsResource(slack_webhook_url=slack_server.url)},
        )
        sensor(context)
    [message] = slack_server.messages
    lines = message["text"].split("\n")
    assert lines[0] == "*pendo_sync: run of refusing_job failed*"
    assert "Sync:" not in message["text"]
    assert lines[-2:] == ["Step refuse: config does not match:", "- column x missing"]


def test_alerts_from_env_reads_env_vars_at_launch(
    monkeypatch: pytest.MonkeyPatch, slack_server: SlackServer
) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PENDO_SYNC_SLACK_WEBHOOK_URL", f"{slack_server.url}/services/T0/B0/xyz")
    monkeypatch.setenv("PENDO_SYNC_SNS_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:alerts")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("PENDO_SYNC_UI_URL", "http://dagster.internal")
    alerts = alerts_from_env()
    webhook = alerts.slack_webhook_url
    assert isinstance(webhook, dg.EnvVar)
    assert webhook.env_var_name == "PENDO_SYNC_SLACK_WEBHOOK_URL"
    assert isinstance(alerts.aws_region, dg.EnvVar)
    assert alerts.aws_region.env_var_name == "AWS_DEFAULT_REGION"
    assert alerts.slack_token == "" and not isinstance(alerts.slack_token, dg.EnvVar)
    assert alerts.describe() == "Slack webhook, SNS arn:aws:sns:eu-west-1:123456789012:alerts"
    assert alerts.run_link("r9") == "http://dagster.internal/runs/r9"

    @dg.op
    def notify(alerts: AlertsResource) -> str:
        # Only the webhook: the topic above does not exist, so a resolved webhook is what is under test.
        slack_only = AlertsResource(slack_webhook_url=alerts.slack_webhook_url)
        assert slack_only.send(Alert(title="hello", text="from a run")) == []
        return alerts.slack_webhook_url

    @dg.job
    def notify_job() -> None:
        notify()

    # The secret is read when the run starts, not when the definitions were built.
    monkeypatch.setenv("PENDO_SYNC_SLACK_WEBHOOK_URL", f"{slack_server.url}/services/T1/B1/rotated")
    defs = dg.Definitions(jobs=[notify_job], resources={"alerts": alerts})
    result = defs.resolve_job_def("notify_job").execute_in_process()
    assert result.output_for_node("notify") == f"{slack_server.url}/services/T1/B1/rotated"
    assert [r.path for r in slack_server.requests] == ["/services/T1/B1/rotated"]
    assert slack_server.messages == [{"text": "*hello*\nfrom a run"}]


def test_alerts_from_env_with_nothing_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    alerts = alerts_from_env()
    assert not alerts.enabled()
    assert "PENDO_SYNC_SLACK_WEBHOOK_URL" in alerts.describe()
    assert alerts.run_link("r1") == ""
    assert alerts.send(Alert(title="t", text="x")) == []


def test_run_failure_sensor_skips_with_the_reason_when_no_destination_is_set() -> None:
    sensor = build_run_failure_sensor()
    with dg.instance_for_test() as instance:
        result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
            resources={"pendo_sync_alerts": AlertsResource()},
        )
        skipped = sensor(context)
    assert isinstance(skipped, dg.SkipReason)
    assert skipped.skip_message == (
        "alerting is off: no destinations (set PENDO_SYNC_SLACK_WEBHOOK_URL or PENDO_SYNC_SNS_TOPIC_ARN)"
    )
