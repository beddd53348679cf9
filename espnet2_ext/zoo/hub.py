"""The Hugging Face hub: repository ids, snapshots in the hub client's cache, upload.

A hub repository of a model holds the unpacked pack (see
:func:`espnet2_ext.zoo.card.stage`); it is fetched with
``huggingface_hub.snapshot_download`` into the hub client's cache, so a second load
reads the cache (and works offline, ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Tuple

from espnet2_ext.version import __version__
from espnet2_ext.zoo.compat import PLUGIN_NAME
from espnet2_ext.zoo.files import PathLike

#: ``user/name`` on the Hugging Face hub (the characters the hub allows in each part).
_HUB_ID = re.compile(r"^(?:hf://)?([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w./-]+))?$")


def parse_hub_id(source: str) -> Optional[Tuple[str, Optional[str]]]:
    """``(repo_id, revision)`` if ``source`` reads as a hub id, else ``None``."""
    match = _HUB_ID.match(str(source))
    if match is None:
        return None
    return match.group(1), match.group(2)


def hub_snapshot(
    repo_id: str,
    *,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    local_files_only: bool = False,
) -> Path:
    """Download (or find in the hub client's cache) a model repository; returns it.

    ``huggingface_hub`` falls back to its cache when the hub cannot be reached, and
    reads only the cache with ``local_files_only`` or ``HF_HUB_OFFLINE=1``.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - a dependency of setup.py
        raise ImportError(
            "loading from the hub needs huggingface_hub: pip install huggingface_hub"
        ) from e
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=local_files_only,
            library_name="espnet2_ext",
            library_version=__version__,
        )
    except Exception as e:
        raise OSError(
            f"cannot get {repo_id}{'@' + revision if revision else ''} from the "
            f"Hugging Face hub, and it is not in the cache "
            f"({cache_dir or 'default hub cache'}): {type(e).__name__}: {e}"
        ) from e
    return Path(path)


def upload(
    folder: PathLike,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str = "Upload espnet2_ext model",
    endpoint: Optional[str] = None,
) -> str:
    """Create the repository (if needed) and upload ``folder``; returns its URL.

    Authentication is the hub client's (``hf auth login`` or ``HF_TOKEN``).
    """
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, library_name=PLUGIN_NAME)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        commit_message=commit_message,
    )
    return str(url)
