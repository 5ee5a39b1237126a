"""Fixtures for alert tests: a local Slack endpoint that records what it is sent, and SNS on moto's server.

`slack_server` answers every POST with `.status` and `.response_body` (set them to make Slack fail or
refuse), and keeps each request. `moto_sns` gives a fresh SNS topic with an SQS queue subscribed to it, so
a test can read back exactly what SNS delivered.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer


@dataclass
class SlackRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class SlackServer:
    url: str = ""
    status: int = 200
    response_body: str = "ok"  # what an incoming webhook answers; chat.postMessage answers JSON
    requests: list[SlackRequest] = field(default_factory=list)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The JSON body of each request, in order."""
        return [r.body for r in self.requests]


@pytest.fixture
def slack_server() -> Iterator[SlackServer]:
    """A Slack stand-in on 127.0.0.1 (a free port), recording each POST."""
    state = SlackServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(SlackRequest(self.path, dict(self.headers.items()), json.loads(raw)))
            payload = state.response_body.encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json" if payload[:1] == b"{" else "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on a free port, shared by the session (each test makes its own topic and queue)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class MotoSns:
    endpoint_url: str
    topic_arn: str
    queue_url: str
    region: str

    def _client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    def received(self) -> list[dict[str, Any]]:
        """The SNS notifications delivered to the queue since the last call (parsed JSON envelopes)."""
        sqs = self._client("sqs")
        out: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = batch.get("Messages", [])
            if not messages:
                return out
            for message in messages:
                out.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def moto_sns(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> MotoSns:
    """A fresh SNS topic on moto with an SQS queue subscribed; fake credentials so nothing reaches AWS."""
    region = "eu-west-1"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    suffix = uuid.uuid4().hex[:12]
    sns = boto3.client("sns", region_name=region, endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", region_name=region, endpoint_url=moto_endpoint)
    topic_arn = sns.create_topic(Name=f"pendo-sync-alerts-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"pendo-sync-alerts-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return MotoSns(endpoint_url=moto_endpoint, topic_arn=topic_arn, queue_url=queue_url, region=region)
