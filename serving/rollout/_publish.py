"""Publishing an exported SavedModel directory into the model repository as a new version.

`Rollout.publish` hands an `export.ExportSpec` (or a training result) to the repository; a
directory that is already a SavedModel (or a training run directory holding one) comes here:
it is copied in atomically and, when the same bytes are already published, not copied again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tfstack.serving.rollout._errors import RolloutError
from tfstack.serving.rollout._state import check_version

logger = logging.getLogger("tfstack.rollout")


def publish_saved_model(repository: Any, model_name: str, source: Path, *, version: int | None = None):
    """Copy an exported SavedModel directory into the repository as a new version, atomically.

    The copy goes into a hidden `.staging-<id>` directory beside the versions (TF Serving
    ignores it), is fsynced, and is renamed to the version number under the repository's
    publish lock, so a server never sees a half-copied version (tensorflow/serving#1086).
    A tfstack manifest in the source is kept (its version number updated); otherwise a minimal
    one is written with the signatures, so gates and `status` work.
    A training run directory is accepted if it holds a SavedModel (searched one level down).
    """
    from tfstack import export

    source = Path(source)
    if not source.is_dir():
        raise RolloutError(f"Cannot publish {source}: not a directory (expected an exported SavedModel directory).")
    saved_model = source if (source / "saved_model.pb").is_file() else None
    if saved_model is None:
        found = sorted(p.parent for p in source.glob("*/saved_model.pb"))
        if len(found) == 1:
            saved_model = found[0]
    if saved_model is None:
        raise RolloutError(
            f"Cannot publish {source}: it holds no saved_model.pb (nor one in a direct subdirectory). "
            "A training run directory only has logs and summary.json; publish the run with "
            "`tfstack train` (which exports) or pass its TrainResult to Rollout.publish."
        )
    digest = content_digest(saved_model)
    for existing_version in repository.versions(model_name):
        try:
            existing = repository.manifest(model_name, existing_version)
        except export.ExportError:
            continue
        if existing.get("content_sha256") == digest:
            # Publishing is idempotent: a re-run after a crash or a retry gets the same version.
            logger.info("%s is already published as %s version %d", saved_model, model_name, existing_version)
            return export.PublishedVersion(
                model_name=model_name, version=existing_version,
                path=repository.version_path(model_name, existing_version), manifest=existing,
            )
    published = repository.publish_saved_model(
        saved_model,
        model_name,
        version=None if version is None else check_version(version),
        manifest_updates={"published_from": str(saved_model.absolute()), "content_sha256": digest},
        allow_schema_change=True,  # the canary's signature gate judges it (see Rollout.publish)
    )
    return published


def content_digest(saved_model: Path) -> str:
    """sha256 over the SavedModel's files (names and bytes), without tfstack's manifest."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(saved_model).rglob("*") if p.is_file()):
        relative = path.relative_to(saved_model).as_posix()
        if relative == "assets.extra/manifest.json":
            continue
        digest.update(relative.encode("utf-8") + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()
