"""Push to the loopback Hub and load back from the repo id; failing pushes; the loopback server itself."""

from __future__ import annotations

import hashlib
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers.hub_fixtures import (
    gate_choice,
    reference_outputs,
    save_model_folder,
    tiny_processor,
    trained_gate_model,
    write_test_images,
)
from helpers.hub_outputs import assert_same_outputs
from helpers.fake_hub import REPO_ROOT, FakeHub, client_env, run_python

REPO_ID, BROKEN_REPO_ID = "tester/eco-tiny", "tester/broken"


def free_closed_port_url() -> str:
    """The URL of a 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def sha256_listing(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as server:
        server.fail_commits[BROKEN_REPO_ID] = 500
        yield server


@pytest.fixture(scope="module")
def pushed(hub, tmp_path_factory):
    """Runs `_hub_push_client.py` once (every push scenario) against the loopback Hub."""
    tmp = tmp_path_factory.mktemp("push")
    model, processor = trained_gate_model(), tiny_processor()
    saved = save_model_folder(tmp / "saved", model=model, processor=processor)
    (tmp / "work").mkdir()
    run_python(
        [str(REPO_ROOT / "tests" / "_hub_push_client.py"), str(saved), str(tmp / "work"), str(tmp / "report.json"),
         REPO_ID, BROKEN_REPO_ID, free_closed_port_url()],
        env=client_env(hub=hub, home=tmp / "hf_home_push"), cwd=tmp, project_importable=True,
    )
    report = json.loads((tmp / "report.json").read_text())
    return SimpleNamespace(tmp=tmp, model=model, processor=processor, report=report, export=tmp / "work" / "export")


def test_the_repository_holds_exactly_the_hub_folder(hub, pushed):
    local = pushed.report["push_model"]["export"]
    assert sha256_listing(hub.files(REPO_ID)) == local
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "modeling_ecom2f.py",
            "configuration_ecom2f.py", "image_processing_ecom2f.py"} <= set(local)
    assert hub.repos[REPO_ID]["private"] is True
    assert pushed.report["cli_push_status"] == 0
    assert sha256_listing(hub.files(REPO_ID, revision="dev")) == local  # the command pushed to a new branch


def test_push_failures_are_clear_and_keep_the_hub_folder(pushed):
    report = pushed.report
    assert report["server_error"]["type"] == "HubPushError"
    assert "the Hub answered HTTP 500" in report["server_error"]["message"]
    assert "authentication failed (HTTP 401)" in report["bad_token"]["message"]
    assert "could not reach the Hub (ConnectError" in report["refused"]["message"]
    for case in ("server_error", "bad_token", "refused"):
        assert f"The local Hub folder {pushed.export} is intact." in report[case]["message"]
    assert report["export_intact"]
    kept = report["temporary_export_failure"]["message"].split("The local Hub folder ")[1].split(" is intact")[0]
    assert (Path(kept) / "config.json").is_file()  # a failed push keeps even a temporary export, and names it
    assert report["cli_failure_status"] == 1


@pytest.mark.slow
def test_pushed_repository_loads_without_the_project(hub, pushed):
    images = write_test_images(pushed.tmp / "images")
    out, cwd = pushed.tmp / "loaded.pt", pushed.tmp / "cwd"
    cwd.mkdir()
    run_python(
        [str(REPO_ROOT / "tests" / "_hub_load_client.py"), REPO_ID, str(out), *map(str, images),
         "--threads", str(torch.get_num_threads())],
        env=client_env(hub=hub, home=pushed.tmp / "hf_home_load"), cwd=cwd, project_importable=False,
    )
    report = torch.load(out, weights_only=False)
    assert not any(report["visible_after_block"].values()) and report["project_modules_loaded"] == []
    assert all(".tester.eco_hyphen_tiny." in name for name in report["classes"].values()), report["classes"]
    assert any(path.startswith(f"/{REPO_ID}/resolve/") for _, path, _ in hub.requests)
    expected = reference_outputs(model=pushed.model, processor=pushed.processor, image_paths=images)
    assert report["outputs"]["encoder_layers_used"].tolist() == [gate_choice(pushed.model.config)] * len(images)
    assert_same_outputs(report["outputs"], expected)


def test_model_push_to_hub_gives_the_same_layout(hub, pushed):
    if not pushed.report["push_to_hub_routed"]:
        pytest.skip("the client did not push a model object (push_model(model=...))")
    via_model = hub.files(f"{REPO_ID}-via-model")
    assert set(via_model) == set(pushed.report["push_model"]["export"])
    assert via_model["model.safetensors"] == hub.files(REPO_ID)["model.safetensors"]


def test_the_loopback_hub_is_local_and_bounded():
    with FakeHub() as server:
        assert server.server_address[0] == "127.0.0.1"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.url}/api/models/tester/none", timeout=5)
        assert missing.value.code == 404 and missing.value.headers["X-Error-Code"] == "RepoNotFound"
        request = urllib.request.Request(f"{server.url}/api/repos/create", method="POST",
                                         data=b'{"name": "x"}', headers={"Authorization": "Bearer wrong"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401 and server.repos == {}
        url = server.url
    with pytest.raises(urllib.error.URLError):  # shut down: nothing listens any more
        urllib.request.urlopen(f"{url}/api/models/tester/none", timeout=5)
