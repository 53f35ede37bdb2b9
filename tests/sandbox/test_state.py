"""The sandbox's state file: atomic, debounced, versioned; and the label selector grammar."""

from __future__ import annotations

import json
import time

import pytest
from hcloud import Client
from hcloud.images import Image
from hcloud.server_types import ServerType

from sandbox import Sandbox
from sandbox.label_selector import InvalidSelector, label_errors, parse_selector
from tests.fixtures.sandbox import start_sandbox


def test_state_is_written_while_running_and_leaves_no_temporary_files(tmp_path):
    state = tmp_path / "state" / "state.json"
    box = start_sandbox(state)
    try:
        client = Client(token=box.hcloud_token, api_endpoint=box.hcloud_url, poll_interval=0.05)
        for index in range(20):
            client.servers.create(
                name=f"claw-{index}", server_type=ServerType(name="cx22"), image=Image(name="ubuntu-24.04")
            )
        expected_names = {f"claw-{index}" for index in range(20)}
        for _ in range(100):  # the debounced writer catches up without a stop
            if state.exists():
                saved = json.loads(state.read_text())["servers"].values()
                if {server["name"] for server in saved} == expected_names:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("state was not flushed while running")
    finally:
        box.stop()
    # Beside the state: the servers' disks (each booted server has its SSH host key there).
    assert sorted(p.name for p in state.parent.iterdir()) == ["servers", "state.json"]
    assert not [p for p in state.parent.rglob("*") if p.name.endswith(".tmp")]
    assert oct(state.stat().st_mode & 0o777) == "0o600"  # it holds the tokens


def test_unknown_state_version_is_refused(tmp_path):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="unsupported sandbox state version"):
        Sandbox(state)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("env=prod", {"env": "prod"}, True),
        ("env==prod", {"env": "dev"}, False),
        ("env!=prod", {}, True),
        ("env in (a, b),tier", {"env": "b", "tier": ""}, True),
        ("env notin (a,b)", {"env": "a"}, False),
        ("!env", {"env": "x"}, False),
        ("clawdet.io/instance=alice", {"clawdet.io/instance": "alice"}, True),
    ],
)
def test_label_selectors(selector, labels, expected):
    assert parse_selector(selector)(labels) is expected


@pytest.mark.parametrize("selector", ["", "env in ()", "env=(x", "a b c", "env in (a"])
def test_malformed_label_selectors(selector):
    with pytest.raises(InvalidSelector):
        parse_selector(selector)


def test_label_validation_messages():
    assert label_errors({"managed-by": "clawdet", "clawdet.io/tier": "pro", "empty": ""}) == []
    assert label_errors({"-bad": "x"}) and label_errors({"k": "bad value"}) and label_errors({"k": 1})
    assert label_errors({"hetzner.cloud/x": "y"})
    assert label_errors(["not", "a", "mapping"]) == ["Not a valid mapping type."]
