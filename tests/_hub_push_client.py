"""Client process of the push test (project importable, `HF_ENDPOINT` = the loopback hub, `HF_TOKEN` set).

    python _hub_push_client.py SAVED_MODEL_DIR WORK_DIR OUT.json REPO_ID BROKEN_REPO_ID REFUSED_ENDPOINT

Pushes and records what happened in OUT.json, every scenario in this one process:
1. `push_model(model_dir=..., hub_dir=WORK/export, private=True)` to REPO_ID (default branch);
2. the `ecom2f-push` command with the export folder to branch `dev` of REPO_ID;
3. `push_model(model=<loaded model object>, repo_id=REPO_ID-via-model)`, the route for a model object (the model's
   own `push_to_hub` is the stock one: model code does not import `hub`);
4. failures, each with the local export's listing before and after: a server error (BROKEN_REPO_ID answers 500),
   a bad token, a refused connection (REFUSED_ENDPOINT), and `push_model` with a temporary export that fails;
5. the command's exit status on a failing upload.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from hub.push import HubPushError, main as push_main, push_folder, push_model


def listing(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def failure(call) -> dict:
    try:
        call()
    except HubPushError as error:
        return {"type": type(error).__name__, "message": str(error)}
    return {"type": None, "message": "no error"}


def main() -> None:
    saved, work, out, repo, broken, refused = sys.argv[1:7]
    saved, work = Path(saved), Path(work)
    export = work / "export"
    report: dict = {}

    info = push_model(model_dir=saved, repo_id=repo, hub_dir=export, private=True)
    report["push_model"] = {"commit_url": info.commit_url, "export": listing(export)}
    report["cli_push_status"] = push_main([str(export), repo, "--revision", "dev", "--commit-message", "to dev"])

    from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation

    # A model object goes through the same export as a saved folder.
    model = EcoMask2FormerForUniversalSegmentation.from_pretrained(saved)
    push_model(model=model, repo_id=f"{repo}-via-model", commit_message="push_model(model=...)")
    report["push_to_hub_routed"] = True

    before = listing(export)
    report["server_error"] = failure(lambda: push_folder(folder=export, repo_id=broken))
    report["bad_token"] = failure(lambda: push_folder(folder=export, repo_id=repo, token="hf_not_the_right_one"))
    report["refused"] = failure(lambda: push_folder(folder=export, repo_id=repo, endpoint=refused))
    report["export_intact"] = listing(export) == before
    report["temporary_export_failure"] = failure(lambda: push_model(model_dir=saved, repo_id=broken))
    report["cli_failure_status"] = push_main([str(export), broken])
    Path(out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
