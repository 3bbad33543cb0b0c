"""`make run` runs `finops local`: start that very command as a subprocess and talk to it with curl and
the openai SDK, as a newcomer following the README would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from finops.local.stack import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
FINOPS = Path(sys.executable).with_name("finops")


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    port, aws_port = free_port(), free_port()
    keys_file = tmp_path_factory.mktemp("make-run") / "keys.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINOPS_", "AWS_"))}
    proc = subprocess.Popen([str(FINOPS), "local", "--port", str(port), "--aws-port", str(aws_port),
                             "--keys-file", str(keys_file)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"finops local exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    try:
        yield url, json.loads(keys_file.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_curl_against_finops_local(local_server):
    url, keys = local_server
    out = subprocess.run(
        ["curl", "-s", "-i", f"{url}/v1/chat/completions", "-H", f"Authorization: Bearer {keys['free']}",
         "-H", "X-Project-ID: marketing-gen-v1", "-H", "X-User-ID: employee-452", "-H", "X-Environment: development",
         "-d", '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'],
        capture_output=True, text=True, timeout=30, check=True).stdout
    head, _, body = out.partition("\n\n")  # text mode turned \r\n into \n
    assert head.startswith("HTTP/1.1 200")
    assert "X-FinOps-Cost-USD:" in head and "x-ratelimit-remaining-usd:" in head
    assert json.loads(body)["object"] == "chat.completion"


def test_openai_sdk_against_finops_local(local_server):
    url, keys = local_server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=keys["pro"], max_retries=0, default_headers={
        "X-Project-ID": "marketing-gen-v1", "X-User-ID": "employee-452", "X-Environment": "development"})
    reply = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Draft a patent abstract."}])
    assert reply.headers["x-finops-model"] == "gpt-4o"
    assert reply.headers["x-ratelimit-limit-requests"] == "50"
    assert reply.parse().usage.completion_tokens > 0
    with pytest.raises(openai.PermissionDeniedError) as denied:
        openai.OpenAI(base_url=f"{url}/v1", api_key=keys["free"], max_retries=0, default_headers={
            "X-Project-ID": "p", "X-User-ID": "u", "X-Environment": "test"}).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.code == "model_not_allowed"
