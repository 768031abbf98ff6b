"""Upload a Hub folder (EcoMask2Former or EcoDeformableDetr): create the repository (and branch) if needed, then commit the folder.

`push_folder` uploads a folder made by `hub.ecom2f_folder`; `push_model` writes the Hub folder first (a saved model folder,
or a model object) and then uploads, so that every route gives the same repository layout. The token comes from the usual places (`token=`, else
`HF_TOKEN`, else the token saved by `hf auth login`); the endpoint from `endpoint=`, else `HF_ENDPOINT`.

A failed upload (server error, refused connection, bad token) raises `HubPushError`, which says what failed and
where the local Hub folder is; a failure never deletes it.

To push a model object with its custom code, call `push_model(model=model, repo_id=...)`. The model's own
`push_to_hub` is the stock `PushToHubMixin` method (weights and config, no custom code): model code never imports
`hub` (docs/architecture.md, tests/test_architecture.py).

Command line (also `python -m hub.push`):

    ecom2f-push FOLDER REPO_ID [--private] [--revision BRANCH] [--commit-message MSG]
        FOLDER is a Hub folder (it has custom code and auto_map) or a saved model folder, whose Hub folder is written
        first (to --hub-dir, or a temporary folder kept only when the upload fails); --eval-results, --plot and
        --license then go into the card.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TypedDict, Unpack

from huggingface_hub import CommitInfo, HfApi
from huggingface_hub.errors import HfHubHTTPError

try:  # the HTTP client of huggingface_hub: httpx2 from 2.0, httpx before
    from httpx2 import HTTPError as TransportError
except ImportError:  # pragma: no cover - huggingface_hub 1.x
    from httpx import HTTPError as TransportError

from hub.ecom2f_folder import SPECS
from hub.folder import (
    CONFIG_FILE,
    HubFolderSpec,
    write_hub_folder,
    read_model_type,
    run_command,
    spec_for_model_type,
)

DEFAULT_COMMIT_MESSAGE = "Upload EcoMask2Former (custom code, weights, image processor, model card)"


class HubPushError(RuntimeError):
    """The upload to the Hub failed; the message names the cause and the local Hub folder (left intact)."""


def is_hub_folder(folder: str | Path) -> bool:
    """Whether `folder` looks like a Hub folder: a `config.json` with an `auto_map` and the modeling file beside it."""
    config = Path(folder) / CONFIG_FILE
    if not config.is_file():
        return False
    auto_map = json.loads(config.read_text(encoding="utf-8")).get("auto_map") or {}
    modules = {ref.split(".")[0] for ref in auto_map.values() if isinstance(ref, str)}
    return bool(modules) and all((Path(folder) / f"{module}.py").is_file() for module in modules)


def _explain(error: Exception) -> str:
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status in (401, 403):
            return f"authentication failed (HTTP {status}): check the token (token=, HF_TOKEN or `hf auth login`)"
        return f"the Hub answered HTTP {status}: {str(error).splitlines()[0]}"
    return f"could not reach the Hub ({type(error).__name__}: {error})"


class PushOptions(TypedDict, total=False):
    """Where and how `push_folder` commits (also accepted by `push_model`).

    private: visibility of a repository created here (an existing one keeps its own).
    revision: the branch to commit to (created from the default branch if missing); `None`: the default branch.
    commit_message, commit_description, create_pr: as in `HfApi.upload_folder`.
    token: a token, or `None` for the usual environment (`HF_TOKEN`, the saved login).
    endpoint: the Hub URL, or `None` for `HF_ENDPOINT` / huggingface.co.
    """

    private: bool | None
    revision: str | None
    commit_message: str | None
    commit_description: str | None
    create_pr: bool
    token: str | bool | None
    endpoint: str | None


def push_folder(*, folder: str | Path, repo_id: str, **options: Unpack[PushOptions]) -> CommitInfo:
    """Upload a Hub folder to `repo_id` (`namespace/name`), creating the repository and the branch `revision` if
    needed; `options`: see `PushOptions`.

    Raises:
        ValueError: `folder` is not a Hub folder (`config.json` with `auto_map` and its code).
        TypeError: an option that is not a `PushOptions` key.
        HubPushError: the Hub refused or could not be reached (the folder is left as it was).
    """
    unknown = sorted(set(options) - set(PushOptions.__annotations__))
    if unknown:
        raise TypeError(f"push_folder got unknown options {unknown}; allowed: {sorted(PushOptions.__annotations__)}")
    folder, revision = Path(folder), options.get("revision")
    if not is_hub_folder(folder):
        raise ValueError(
            f"{folder} is not a Hub folder (no config.json with auto_map and its code files); "
            "make one with hub.ecom2f_folder.write_model_hub_folder or push_model"
        )
    api = HfApi(endpoint=options.get("endpoint"), token=options.get("token"))
    try:
        repo_id = api.create_repo(repo_id, private=options.get("private"), exist_ok=True).repo_id
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id, folder_path=folder, revision=revision, create_pr=options.get("create_pr", False),
            commit_message=options.get("commit_message") or DEFAULT_COMMIT_MESSAGE,
            commit_description=options.get("commit_description"),
        )
    except (HfHubHTTPError, TransportError, OSError) as error:  # OSError: offline mode, socket errors
        raise HubPushError(
            f"pushing {folder} to {repo_id} on {api.endpoint} failed: {_explain(error)}. "
            f"The local Hub folder {folder} is intact."
        ) from error


def _spec(model, model_dir: str | Path | None) -> HubFolderSpec:
    """The Hub folder spec of a model object or saved folder, by its `model_type` (EcoMask2Former when unknown, whose
    checks then say what is wrong)."""
    model_type = model.config.model_type if model is not None else None
    if model is None and Path(model_dir).is_dir():
        model_type = read_model_type(Path(model_dir))
    return spec_for_model_type(model_type, SPECS) or SPECS[0]


def push_model(
    *,
    repo_id: str,
    model=None,
    model_dir: str | Path | None = None,
    image_processor=None,
    hub_dir: str | Path | None = None,
    eval_results: dict | str | Path | None = None,
    plot: str | Path | None = None,
    license_id: str | None = None,
    max_shard_size: int | str | None = None,
    tags: list[str] | None = None,
    **options: Unpack[PushOptions],
) -> CommitInfo:
    """Write the Hub folder of a model (an object, or a folder saved with `save_pretrained`) and upload it to `repo_id`.

    Any model type the Hub folder writer knows (`hub.ecom2f_folder.SPECS`: EcoMask2Former, EcoDeformableDetr), chosen by
    its `model_type`. Exactly one of `model` and `model_dir` is required. The Hub folder goes to `hub_dir` when given
    (kept; it must be empty or absent), else to a temporary folder that is deleted after a successful upload and kept
    (and named in the error) after a failed one. `tags` are added to the card's tags; `max_shard_size` is passed to
    `save_pretrained` for a model object. The other arguments are those of `hub.folder.write_hub_folder` and
    `PushOptions`.
    """
    if (model is None) == (model_dir is None):
        raise ValueError("push_model needs exactly one of model= (a model object) and model_dir= (a saved folder)")
    temporary = hub_dir is None
    hub_dir = Path(tempfile.mkdtemp(prefix="ecom2f-hub-folder-")) / "hub_folder" if temporary else Path(hub_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="ecom2f-saved-") as saved:
            spec = _spec(model, model_dir)
            if model is not None:
                model.save_pretrained(saved, **({} if max_shard_size is None else {"max_shard_size": max_shard_size}))
                model_dir = saved
            write_hub_folder(
                spec, model_dir=model_dir, output_dir=hub_dir, eval_results=eval_results, plot=plot,
                repo_id=repo_id, license_id=license_id, image_processor=image_processor, tags=tags,
            )
    except BaseException:
        if temporary:
            shutil.rmtree(hub_dir.parent, ignore_errors=True)
        raise
    info = push_folder(folder=hub_dir, repo_id=repo_id, **options)
    if temporary:
        shutil.rmtree(hub_dir.parent, ignore_errors=True)
    return info


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecom2f-push", description="Upload an EcoMask2Former model to the Hub.")
    parser.add_argument("folder", type=Path, help="a Hub folder, or a saved model folder (its Hub folder is written first)")
    parser.add_argument("repo_id", help="namespace/name")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to commit to (created if missing)")
    parser.add_argument("--commit-message", help="commit message")
    parser.add_argument("--hub-dir", type=Path, help="where to write the Hub folder of a saved model folder (kept)")
    parser.add_argument("--eval-results", type=Path, help="JSON of measured results, for the card")
    parser.add_argument("--plot", type=Path, help="PNG trade-off plot, for the card")
    parser.add_argument("--license", dest="license_id", help="Hub license id, for the card")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point `ecom2f-push`; returns the exit status (1 when the upload fails, 2 on a bad input)."""
    args = build_parser().parse_args(argv)
    common = dict(repo_id=args.repo_id, private=args.private or None, revision=args.revision,
                  commit_message=args.commit_message)

    def push() -> str:
        if is_hub_folder(args.folder):
            info = push_folder(folder=args.folder, **common)
        else:
            info = push_model(
                model_dir=args.folder, hub_dir=args.hub_dir, eval_results=args.eval_results, plot=args.plot,
                license_id=args.license_id, **common,
            )
        return f"pushed {args.folder} to {args.repo_id}: {info.commit_url}"

    return run_command("ecom2f-push", push, failures={HubPushError: 1})


if __name__ == "__main__":
    sys.exit(main())
