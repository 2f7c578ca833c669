"""The versioned model repository TF Serving reads: `<base_path>/<model_name>/<int version>/`.

Guarantees (what serving and rollout can rely on):
- A numeric directory appears only by an atomic rename of a complete, verified, fsynced
  SavedModel. Work in progress lives in `.staging-<id>` beside the versions; TF Serving ignores
  non-numeric names (spec §4.2).
- New version numbers are max(existing)+1, chosen under a per-model file lock
  (`.publish.lock`), so concurrent publishers (threads or processes) never collide, and an
  existing version is never overwritten.
- A new version of an existing model must accept what the latest version accepted and answer
  with the same outputs (`compare_signatures`); otherwise publishing raises SchemaChangeError
  and leaves the repository untouched, unless `allow_schema_change=True`.
- A publisher killed mid-way leaves only its staging directory; the next publish removes
  staging directories whose owner is gone (each is guarded by its own `.staging-<id>.lock`,
  held for the publisher's lifetime and released by the OS when it dies).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.export._errors import (
    CorruptVersionError,
    ExportError,
    RepositoryError,
    SchemaChangeError,
    VerificationError,
    VersionExistsError,
    VersionNotFoundError,
)
from tfstack.export._spec import ExportSpec, PublishedVersion, check_model_name, check_version

ASSETS_EXTRA = "assets.extra"
STAGING_PREFIX = ".staging-"
REMOVING_PREFIX = ".removing-"
LOCK_NAME = ".publish.lock"
VERIFY_TOLERANCE = 1e-5
# TF Serving counts a child as a version iff it parses as an int (spec §4.2); we only create plain
# decimal names, but must count leading-zero names other tools may have made.
_NUMERIC = re.compile(r"^[0-9]+$")


class ModelRepository:
    """Read and publish versions under `base_path`.

    Example:
        >>> repo = ModelRepository("./models")
        >>> published = repo.publish(spec)          # -> PublishedVersion(version=1, ...)
        >>> repo.versions("digits"), repo.latest("digits")
        ([1], 1)
    """

    def __init__(self, base_path: str | os.PathLike[str], *, lock_timeout: float = 120.0) -> None:
        if not isinstance(base_path, (str, os.PathLike)):
            raise TypeError(f"base_path must be a str or path. Received: base_path={base_path!r}")
        if str(base_path) == "":
            raise ValueError("base_path must not be empty. Received: base_path=''")
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) or lock_timeout < 0:
            raise ValueError(f"lock_timeout must be a number of seconds >= 0. Received: lock_timeout={lock_timeout!r}")
        self.base_path = Path(base_path)
        self.lock_timeout = float(lock_timeout)

    def __repr__(self) -> str:
        return f"ModelRepository({str(self.base_path)!r})"

    # ---- reading -------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Model names (directories with a valid model name) under base_path; [] if it does not exist."""
        if not self._base_exists():
            return []
        names = []
        for child in self._children(self.base_path):
            if child.is_dir() and _is_model_name(child.name):
                names.append(child.name)
        return sorted(names)

    def versions(self, model_name: str) -> list[int]:
        """Sorted version numbers of `model_name` (numeric directories only); [] if none."""
        return sorted(self._version_dirs(check_model_name(model_name)))

    def latest(self, model_name: str) -> int | None:
        """The highest version of `model_name`, or None if it has none."""
        versions = self.versions(model_name)
        return versions[-1] if versions else None

    def version_path(self, model_name: str, version: int) -> Path:
        """The directory of an existing version. Raises VersionNotFoundError if it does not exist."""
        check_model_name(model_name)
        version = check_version(version)
        dirs = self._version_dirs(model_name)
        if version not in dirs:
            known = sorted(dirs)
            raise VersionNotFoundError(
                f"Version {version} of model {model_name!r} not found under {self.base_path}. "
                f"Available versions: {known or 'none'}"
            )
        return dirs[version]

    def manifest(self, model_name: str, version: int) -> dict[str, Any]:
        """The manifest of one version. Raises CorruptVersionError if the version is incomplete."""
        path = self.version_path(model_name, version)
        if not (path / "saved_model.pb").is_file():
            raise CorruptVersionError(
                f"Version {version} of model {model_name!r} at {path} is corrupt: it has no saved_model.pb "
                "(expected a complete SavedModel directory). Remove it or publish a new version."
            )
        manifest_path = path / ASSETS_EXTRA / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise CorruptVersionError(
                f"Version {version} of model {model_name!r} has no manifest at {manifest_path} "
                "(it was not published by tfstack, or was modified)."
            ) from exc
        except (OSError, ValueError) as exc:
            raise CorruptVersionError(
                f"Version {version} of model {model_name!r}: cannot read {manifest_path}: {exc}"
            ) from exc
        if not isinstance(manifest, dict):
            raise CorruptVersionError(
                f"Version {version} of model {model_name!r}: {manifest_path} is not a JSON object. "
                f"Received: {type(manifest).__name__}"
            )
        return manifest

    # ---- writing -------------------------------------------------------------------------

    def publish(
        self, spec: ExportSpec, *, version: int | None = None, allow_schema_change: bool = False
    ) -> PublishedVersion:
        """Export `spec` as a new version, atomically; see the module docstring for the guarantees.

        Args:
            spec: what to export.
            version: an explicit version number; default max(existing)+1.
            allow_schema_change: publish even if the signatures break the latest version's clients.

        Returns:
            The PublishedVersion (model_name, version, path, manifest).

        Raises:
            VersionExistsError: `version` is given and already exists.
            SchemaChangeError: the model exists and the new signatures would break its clients.
            RepositoryError: base_path is a file, cannot be created or is not writable.
            VerificationError: the written SavedModel did not reload or predicts differently.
            ExportError: saving failed for another reason.
        """
        if not isinstance(spec, ExportSpec):
            raise TypeError(f"spec must be an export.ExportSpec. Received: spec={type(spec).__name__}")
        return self._publish(
            spec.model_name, version, lambda staging: self._stage_export(spec, staging),
            allow_schema_change=allow_schema_change,
        )

    def publish_saved_model(
        self,
        source: str | os.PathLike[str],
        model_name: str,
        *,
        version: int | None = None,
        manifest_updates: Mapping[str, Any] | None = None,
        sample_inputs: Mapping[str, np.ndarray] | None = None,
        tags: tuple[str, ...] = ("serve",),
        data_profile: Mapping[str, Any] | None = None,
        warmup_from: Sequence[str] = (),
        allow_schema_change: bool = False,
    ) -> PublishedVersion:
        """Copy an already exported SavedModel directory in as a new version, with publish's guarantees.

        The copy is staged, checked the way TF Serving loads it (`check_saved_model`: Session
        loader, warmup replay, every signature run), fsynced and renamed into place exactly like
        `publish`, so a server never sees a half-copied version (tensorflow/serving#1086) nor one
        it cannot load. A tfstack manifest in the source is kept (model name and version
        updated); otherwise a minimal one with the signatures is written, so `models show` and
        rollout gates work.

        Args:
            sample_inputs: raw rows for `serving_default` (input alias -> array); when given they
                become the version's warmup records and sample_request.json (replacing the source's).
            tags: the MetaGraph tags TF Serving will load (--saved_model_tags).
            data_profile: the sample's data profile (`build_profile`), written to
                `assets.extra/data_profile.json` (replacing the source's).
            warmup_from: request logs whose requests (at most 100) are added to the warmup records.
            allow_schema_change: publish even if the signatures break the latest version's clients.

        Raises:
            SchemaChangeError: the model exists and the new signatures would break its clients.
            RepositoryError: `source` is not a SavedModel directory, or the repository is not writable.
            VerificationError: the copy would not load or serve in TF Serving (one line saying why).
            VersionExistsError: `version` is given and already exists.
        """
        source = Path(source)
        if not (source / "saved_model.pb").is_file():
            raise RepositoryError(
                f"Cannot publish {source}: expected a SavedModel directory (with saved_model.pb)."
            )
        check_model_name(model_name)
        updates = dict(manifest_updates or {})
        return self._publish(
            model_name, version,
            lambda staging: _stage_copy(source, staging, model_name, updates, sample_inputs=sample_inputs, tags=tuple(tags),
                                        data_profile=data_profile, warmup_from=tuple(warmup_from)),
            allow_schema_change=allow_schema_change,
        )

    def _publish(
        self,
        model_name: str,
        version: int | None,
        stage: Callable[[Path], Callable[[int, list[str]], dict[str, Any]]],
        *,
        allow_schema_change: bool = False,
    ) -> PublishedVersion:
        """Stage a version with `stage(staging)`, then give it a number and rename it into place.

        `stage` fills the staging directory and returns a function that builds the manifest for
        the chosen version (called under the publish lock, with the staged file list).
        """
        if version is not None:
            version = check_version(version)
        created_model_dir = not (self.base_path / model_name).exists()
        model_dir = self._prepare_model_dir(model_name)
        if version is not None:
            self._check_free(model_name, version)
        self._remove_stale(model_dir)

        from filelock import FileLock

        staging_id = uuid.uuid4().hex
        staging = model_dir / f"{STAGING_PREFIX}{staging_id}"
        # The staging lock exists before the directory, so a cleaner never sees an unguarded staging dir.
        staging_lock = FileLock(str(model_dir / f"{STAGING_PREFIX}{staging_id}.lock"), timeout=0)
        try:
            staging_lock.acquire()
        except OSError as exc:
            raise RepositoryError(f"Cannot write into {model_dir}: {exc}") from exc
        succeeded = False
        try:
            try:
                staging.mkdir()
                build_manifest = stage(staging)
                published = self._commit_staged(
                    model_name, staging, model_dir, version, build_manifest, allow_schema_change=allow_schema_change
                )
                succeeded = True
                return published
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        finally:
            # Unlink before releasing: once released, a cleaner may lock this name, and we must not
            # delete a lock file that someone else holds.
            Path(staging_lock.lock_file).unlink(missing_ok=True)
            staging_lock.release()
            if created_model_dir and not succeeded:
                # A refused first version leaves no empty model directory behind (a server
                # configured for it would otherwise see a model without versions). rmdir fails,
                # harmlessly, if another publisher has started using it meanwhile.
                with contextlib.suppress(OSError):
                    model_dir.rmdir()

    def remove(self, model_name: str, version: int) -> None:
        """Delete one version. It disappears atomically (renamed away first), then is deleted."""
        path = self.version_path(model_name, version)
        doomed = path.parent / f"{REMOVING_PREFIX}{uuid.uuid4().hex}"
        with self._publish_lock(path.parent):
            try:
                os.rename(path, doomed)
            except OSError as exc:
                raise RepositoryError(f"Cannot remove version {version} of model {model_name!r} at {path}: {exc}") from exc
            _fsync_dir(path.parent)
        shutil.rmtree(doomed, ignore_errors=True)

    # ---- internals -----------------------------------------------------------------------

    def _stage_export(self, spec: ExportSpec, staging: Path) -> Callable[[int, list[str]], dict[str, Any]]:
        from tfstack.export import _manifest, _plots, _profile, _signatures, _warmup

        try:
            class_names = _signatures.resolve_class_names(spec) if spec.task == "classification" else ()
            _signatures.save_saved_model(spec, staging, class_names)
            assets = staging / ASSETS_EXTRA
            assets.mkdir(exist_ok=True)
            _warmup.write_warmup(spec, assets / _warmup.WARMUP_FILE)
            # TF Serving's parser accepts NaN/Infinity tokens (spec §2.1), so real rows with them stay sendable.
            _write_json(assets / _warmup.SAMPLE_REQUEST_FILE, _warmup.sample_request(spec), allow_nan=True)
            if spec.data_profile is not None:
                _profile.write_profile(spec.data_profile, assets / _profile.PROFILE_FILE)
            if spec.history:
                _plots.plot_training_curves(spec.history, assets / _plots.TRAINING_CURVES_FILE)
            if spec.task == "classification" and spec.confusion_matrix is not None:
                _plots.plot_confusion_matrix(spec.confusion_matrix, class_names, assets / _plots.CONFUSION_MATRIX_FILE)
        except ExportError:
            raise
        except OSError as exc:
            raise RepositoryError(f"Cannot write the SavedModel into {staging}: {exc}") from exc
        except Exception as exc:
            # TensorFlow errors span many lines; the first says what went wrong, the chain keeps the rest.
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise ExportError(
                f"Exporting model {spec.model_name!r} failed while tracing/saving its signatures "
                f"(does keras_model accept {{{', '.join(repr(f.name) for f in spec.features)}}} as raw inputs?): "
                f"{type(exc).__name__}: {first_line}"
            ) from exc
        _verify(spec, staging, class_names)
        signatures = _manifest.read_signature_summary(staging)
        return lambda version, files: _manifest.build_manifest(
            spec, version=version, class_names=class_names, signatures=signatures, files=files
        )

    def _commit_staged(
        self,
        model_name: str,
        staging: Path,
        model_dir: Path,
        version: int | None,
        build_manifest: Callable[[int, list[str]], dict[str, Any]],
        *,
        allow_schema_change: bool = False,
    ) -> PublishedVersion:
        from tfstack.export import _manifest

        with self._publish_lock(model_dir):
            if not allow_schema_change:
                # Under the lock: compared with the version that is latest when this one lands.
                self._check_schema(model_name, staging)
            if version is None:
                existing = self._numeric_children(model_dir)
                version = max(existing, default=0) + 1
            else:
                self._check_free(model_name, version)
            manifest_path = staging / ASSETS_EXTRA / _manifest.MANIFEST_FILE
            files = sorted(
                {str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()}
                | {str(manifest_path.relative_to(staging))}
            )
            manifest = build_manifest(version, files)
            manifest_path.parent.mkdir(exist_ok=True)
            _write_json(manifest_path, manifest)
            _fsync_tree(staging)
            target = model_dir / str(version)
            try:
                # os.rename would silently replace an empty directory; the check under the lock
                # above plus this guard keep "nothing is overwritten" true.
                if os.path.lexists(target):
                    raise VersionExistsError(f"Version {version} of model {model_name!r} already exists at {target}")
                os.rename(staging, target)
            except VersionExistsError:
                raise
            except OSError as exc:
                raise RepositoryError(f"Cannot move {staging} to {target}: {exc}") from exc
            _fsync_dir(model_dir)
            # The model directory itself may be new; make its entry durable too.
            _fsync_dir(model_dir.parent)
        return PublishedVersion(model_name=model_name, version=version, path=target, manifest=manifest)

    def _check_schema(self, model_name: str, staging: Path) -> None:
        """Raise SchemaChangeError if the staged version would break the latest version's clients."""
        from tfstack.export import _manifest

        self.check_compatible(model_name, _manifest.read_signature_summary(staging))

    def check_compatible(self, model_name: str, signatures: Mapping[str, Any], *, partial: bool = False) -> None:
        """Refuse a version with these signatures (a summary, as manifests store them) if it would
        break the clients of `model_name`'s latest version; nothing to compare, nothing refused.

        Args:
            partial: `signatures` holds only some of the new version's signatures (e.g.
                `serving_signature(...)` before training); only those are compared.

        Raises:
            SchemaChangeError: the message names each break and both ways out.
        """
        from tfstack.export import _manifest
        from tfstack.export._compat import compare_signatures

        latest = self.latest(model_name)
        if latest is None:
            return
        old: Any = None
        with contextlib.suppress(ExportError):
            old = self.manifest(model_name, latest).get("signatures")
        if not isinstance(old, Mapping):
            try:
                old = _manifest.read_signature_summary(self._version_dirs(model_name)[latest])
            except Exception:  # protobuf's DecodeError, OSError: a version we cannot read gives nothing to compare
                return
        if partial:
            old = {name: summary for name, summary in old.items() if name in signatures}
        comparison = compare_signatures(old, signatures)
        if comparison.compatible:
            return
        breaks = "\n".join(f"  - {b}" for b in comparison.breaks)
        raise SchemaChangeError(
            f"Refusing to publish a new version of {model_name!r} under {self.base_path}: its signatures are "
            f"incompatible with version {latest}, so clients of {model_name!r} would break; nothing was written.\n"
            f"{breaks}\n"
            f"Publish it under another name (--model-name NAME) or, if the clients are ready, force it "
            f"(--allow-schema-change; in Python allow_schema_change=True)."
        )

    def _base_exists(self) -> bool:
        if self.base_path.exists() and not self.base_path.is_dir():
            raise RepositoryError(f"base_path {self.base_path} is a file, expected a directory.")
        return self.base_path.is_dir()

    def _children(self, directory: Path) -> list[Path]:
        try:
            return list(directory.iterdir())
        except OSError as exc:
            raise RepositoryError(f"Cannot list {directory}: {exc}") from exc

    def _numeric_children(self, model_dir: Path) -> set[int]:
        # Files count too: TF Serving would try to load them as versions (spec §4.2).
        return {int(c.name) for c in self._children(model_dir) if _NUMERIC.match(c.name)} if model_dir.is_dir() else set()

    def _version_dirs(self, model_name: str) -> dict[int, Path]:
        if not self._base_exists():
            return {}
        model_dir = self.base_path / model_name
        if model_dir.exists() and not model_dir.is_dir():
            raise RepositoryError(f"{model_dir} is a file, expected the directory of model {model_name!r}.")
        return version_directories(model_dir)

    def _check_free(self, model_name: str, version: int) -> None:
        if version in self._numeric_children(self.base_path / model_name):
            raise VersionExistsError(
                f"Version {version} of model {model_name!r} already exists under {self.base_path}; "
                "versions are never overwritten. Omit the version to publish max+1, or remove it first."
            )

    def _prepare_model_dir(self, model_name: str) -> Path:
        self._base_exists()
        model_dir = self.base_path / model_name
        if model_dir.exists() and not model_dir.is_dir():
            raise RepositoryError(f"{model_dir} is a file, expected the directory of model {model_name!r}.")
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise RepositoryError(f"Cannot create {model_dir}: a path component is a file, expected directories.") from exc
        except NotADirectoryError as exc:
            raise RepositoryError(f"Cannot create {model_dir}: a path component is a file, expected directories.") from exc
        except OSError as exc:
            raise RepositoryError(f"Cannot create {model_dir} (base_path {self.base_path} is not writable): {exc}") from exc
        if not os.access(model_dir, os.W_OK | os.X_OK):
            raise RepositoryError(f"Cannot write into {model_dir}: permission denied (base_path {self.base_path}).")
        return model_dir

    @contextlib.contextmanager
    def _publish_lock(self, model_dir: Path) -> Iterator[None]:
        """Hold the per-model lock that serialises choosing a version number and renaming."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(model_dir / LOCK_NAME), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout as exc:
            raise RepositoryError(
                f"Timed out after {self.lock_timeout:g}s waiting for {lock.lock_file}; another publisher holds it."
            ) from exc
        except OSError as exc:
            raise RepositoryError(f"Cannot lock {lock.lock_file}: {exc}") from exc
        try:
            yield
        finally:
            lock.release()

    @staticmethod
    def _remove_stale(model_dir: Path) -> None:
        """Remove staging/removal leftovers whose owner is gone (a kill -9 mid-publish)."""
        from filelock import FileLock, Timeout

        for child in list(model_dir.iterdir()):
            name = child.name
            if name.startswith(REMOVING_PREFIX):
                shutil.rmtree(child, ignore_errors=True)
                continue
            if not name.startswith(STAGING_PREFIX):
                continue
            staging_name = name[: -len(".lock")] if name.endswith(".lock") else name
            lock = FileLock(str(model_dir / f"{staging_name}.lock"), timeout=0)
            try:
                lock.acquire()
            except (Timeout, OSError):
                continue  # a live publisher owns it
            try:
                shutil.rmtree(model_dir / staging_name, ignore_errors=True)
            finally:
                Path(lock.lock_file).unlink(missing_ok=True)
                lock.release()


def publish(
    spec: ExportSpec, base_path: str | os.PathLike[str], *, version: int | None = None, allow_schema_change: bool = False
) -> PublishedVersion:
    """Export `spec` as a new version of `spec.model_name` under `base_path`, atomically.

    A new version of an existing model whose signatures would break its clients is refused
    (SchemaChangeError) unless `allow_schema_change=True`.

    Example:
        >>> published = export.publish(spec, "./models")
        >>> published.path
        PosixPath('models/digits/1')

    See `ModelRepository.publish` for the errors.
    """
    return ModelRepository(base_path).publish(spec, version=version, allow_schema_change=allow_schema_change)


def _stage_copy(
    source: Path,
    staging: Path,
    model_name: str,
    updates: dict[str, Any],
    *,
    sample_inputs: Mapping[str, np.ndarray] | None = None,
    tags: tuple[str, ...] = ("serve",),
    data_profile: Mapping[str, Any] | None = None,
    warmup_from: tuple[str, ...] = (),
) -> Callable[[int, list[str]], dict[str, Any]]:
    """Copy an exported SavedModel into `staging`, add warmup from samples, verify; return its manifest builder."""
    from tfstack.export import _manifest, _profile, _signatures, _warmup

    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    except OSError as exc:
        raise RepositoryError(f"Cannot copy {source} into {staging}: {exc}") from exc
    assets = staging / ASSETS_EXTRA
    if sample_inputs is not None or warmup_from:
        assets.mkdir(exist_ok=True)
        records = []
        if sample_inputs is not None:
            inputs = {name: np.asarray(array) for name, array in sample_inputs.items()}
            records = _warmup.predict_warmup_logs(model_name, inputs)
            _write_json(assets / _warmup.SAMPLE_REQUEST_FILE, _warmup.sample_request_body(inputs), allow_nan=True)
        elif (assets / _warmup.WARMUP_FILE).is_file():
            records = _warmup.read_warmup_logs(assets / _warmup.WARMUP_FILE)
        records += _warmup.logged_warmup_logs(warmup_from, model_name)
        _warmup.write_warmup_logs(records, assets / _warmup.WARMUP_FILE)
    if data_profile is not None:
        (staging / ASSETS_EXTRA).mkdir(exist_ok=True)
        _profile.write_profile(data_profile, staging / ASSETS_EXTRA / _profile.PROFILE_FILE)
    _verify_saved_model(source, staging, tags)
    try:
        manifest = json.loads((staging / ASSETS_EXTRA / _manifest.MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict):
        try:
            signatures = _manifest.read_signature_summary(staging)
        except Exception as exc:
            raise RepositoryError(f"Cannot read the signatures of {source}: {exc}") from exc
        manifest = {"format": 1, "metrics": {}, "signatures": signatures}

    def build(version: int, files: list[str]) -> dict[str, Any]:
        manifest.setdefault("created", _manifest.utc_now())
        return {**manifest, **updates, "model_name": model_name, "version": version, "files": files}

    return build


def _verify_saved_model(source: Path, staging: Path, tags: tuple[str, ...]) -> None:
    """Refuse a copied SavedModel that TF Serving would not load or serve (see tfstack.export._check)."""
    from tfstack.export._check import check_saved_model

    report = check_saved_model(staging, tags=tags)
    failures = report.failures
    if failures:
        more = f" (and {len(failures) - 1} more problem(s))" if len(failures) > 1 else ""
        reason = failures[0].replace(str(staging), str(source))
        raise VerificationError(f"{source} would not serve in TF Serving, so it was not published: {reason}{more}")


def _is_model_name(name: str) -> bool:
    try:
        check_model_name(name)
    except ValueError:
        return False
    return True


def _verify(spec: ExportSpec, path: Path, class_names: tuple[str, ...]) -> None:
    """Load the staged SavedModel as TF Serving does and check every signature against Keras.

    The Session loader (restore op, init op, Session.run on the SignatureDef's tensor names) is
    what `tensorflow_model_server` uses; TF2's object loader would hide a restore that misses
    the handles the signatures read. serving_default runs on the raw sample rows,
    classify/regress on tf.Examples serialized from the same rows; all must match the in-memory
    Keras model to VERIFY_TOLERANCE. Raises VerificationError (one line naming the signature).
    """
    from tfstack.export import _session, _signatures

    expected = _signatures.signature_names(spec.task)
    inputs = _signatures.sample_tensors(spec)
    reference = np.asarray(spec.keras_model(dict(inputs)), dtype=np.float32)
    if spec.task == "regression":
        reference = reference.reshape(-1)
    examples: np.ndarray = np.array(_signatures.serialize_examples(spec.features, spec.sample_inputs), dtype=object)
    with _session.SessionModel(path) as model:
        missing = [name for name in expected if name not in model.signature_defs]
        if missing:
            raise VerificationError(
                f"The exported SavedModel lacks signatures {missing}. Received: {sorted(model.signature_defs)}"
            )
        for name in expected:
            method = model.signature_defs[name].method_name
            if method != _signatures.METHOD_NAMES[name]:
                raise VerificationError(
                    f"Signature {name!r} has method_name {method!r}; TF Serving with "
                    f"--enable_signature_method_name_check needs {_signatures.METHOD_NAMES[name]!r}."
                )
        served = model.run(_signatures.SERVING_DEFAULT, dict(spec.sample_inputs))
        if spec.task == "classification":
            _compare(_signatures.SERVING_DEFAULT, "probabilities", served.get("probabilities"), reference)
            _check_classes(served, class_names)
            by_example = model.run(_signatures.CLASSIFY, {_signatures.EXAMPLES_INPUT: examples})
            _compare(_signatures.CLASSIFY, "scores", by_example.get("scores"), reference)
            classes = by_example.get("classes")
            wanted = np.array([[c.encode() for c in class_names]] * reference.shape[0], dtype=object)
            if classes is None or classes.shape != wanted.shape or not (classes == wanted).all():
                raise VerificationError(
                    f"Signature 'classify' output 'classes' should repeat the class names {list(class_names)} "
                    f"for each of the {reference.shape[0]} examples."
                )
        else:
            _compare(_signatures.SERVING_DEFAULT, "prediction", served.get("prediction"), reference)
            by_example = model.run(_signatures.REGRESS, {_signatures.EXAMPLES_INPUT: examples})
            _compare(_signatures.REGRESS, "outputs", by_example.get("outputs"), reference)


def _compare(signature_name: str, output: str, values: np.ndarray | None, reference: np.ndarray) -> None:
    if values is None:
        raise VerificationError(f"Signature {signature_name!r} has no output {output!r}.")
    values = np.asarray(values)
    if values.dtype != np.float32 or values.shape != reference.shape or not np.allclose(
        values, reference, atol=VERIFY_TOLERANCE, rtol=VERIFY_TOLERANCE, equal_nan=True
    ):
        diff = float(np.max(np.abs(values - reference))) if values.shape == reference.shape else "shape mismatch"
        raise VerificationError(
            f"Signature {signature_name!r} output {output!r}, loaded as TF Serving loads it, predictions differ "
            f"from the Keras model (max abs difference {diff}, shapes {list(values.shape)} vs {list(reference.shape)}, "
            f"dtype {values.dtype}; tolerance {VERIFY_TOLERANCE})."
        )


def _check_classes(served: dict[str, np.ndarray], class_names: tuple[str, ...]) -> None:
    class_id, labels = served.get("class_id"), served.get("class_label")
    probabilities = served["probabilities"]
    if class_id is None or class_id.dtype != np.int64 or not np.array_equal(class_id, probabilities.argmax(axis=-1)):
        raise VerificationError("Signature 'serving_default' output 'class_id' is not the argmax of 'probabilities' (int64).")
    names = np.array([c.encode() for c in class_names], dtype=object)
    if labels is None or labels.shape != class_id.shape or not (labels == names[class_id]).all():
        raise VerificationError(
            f"Signature 'serving_default' output 'class_label' does not name class_id's class in {list(class_names)}."
        )


def _write_json(path: Path, value: Any, *, allow_nan: bool = False) -> None:
    path.write_text(json.dumps(value, indent=2, allow_nan=allow_nan) + "\n", encoding="utf-8")


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(directory))


def version_directories(model_dir: str | os.PathLike[str]) -> dict[int, Path]:
    """Version number -> directory for every all-digit subdirectory of one model's directory.

    This is the repository layout TF Serving reads (`<base_path>/<model_name>/<version>/`); hidden
    staging directories and other names are not versions. A missing `model_dir` has none.
    Raises RepositoryError when the directory cannot be listed.

    Example: `version_directories("models/digits")` -> `{1: Path("models/digits/1"), 2: ...}`
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    try:
        children = sorted(model_dir.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise RepositoryError(f"Cannot list {model_dir}: {exc}") from exc
    dirs: dict[int, Path] = {}
    for child in children:
        if _NUMERIC.match(child.name) and child.is_dir():
            dirs.setdefault(int(child.name), child)
    return dirs


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` so readers see the old or the new content, never a mix.

    A temporary file beside it is written and fsynced, renamed over `path`, and the directory
    fsynced (rollout's config and state files use this too).
    """
    import tempfile

    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
