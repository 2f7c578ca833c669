"""Production data back into training: logged requests joined with labels by request id.

`tfstack train --from-logs LOGS --labels labels.csv` reads the PredictionLogs a server wrote for
`logging_config`, keeps the requests whose id appears in the label file, and adds their input
rows to the training split of the configured dataset (same features, same class names). The
published version's manifest records the lineage: the version that served the logged traffic
(its parent), the log range and the label file's fingerprint.

The label file is a CSV with a header: `request_id,label` (the request id is what the server
returned in `X-Request-ID` / `x-request-id`, and stored in the log); an optional `row` column
labels one row of a batched request (default: every row of that request gets the label).
Classification labels are class names (or class indices); regression labels are numbers.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.training._datasets import Dataset, Split
from tfstack.training._errors import DatasetError


def read_labels(path: str | Path, *, dataset: Dataset) -> dict[tuple[str, int | None], Any]:
    """(request_id, row or None) -> label, from the label CSV.

    Raises:
        DatasetError: missing columns, unknown class names, non-numeric regression labels, duplicates.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if "request_id" not in columns or "label" not in columns:
                raise DatasetError(
                    f"{path} must be a CSV with a header holding request_id and label (optional: row). "
                    f"Received columns: {columns}"
                )
            rows = list(reader)
    except OSError as exc:
        raise DatasetError(f"Cannot read the labels file {path}: {exc}") from exc
    classes = {name: i for i, name in enumerate(dataset.class_names)}
    labels: dict[tuple[str, int | None], Any] = {}
    for line, row in enumerate(rows, start=2):
        request_id, text = (row.get("request_id") or "").strip(), (row.get("label") or "").strip()
        if not request_id or not text:
            raise DatasetError(f"{path} line {line}: request_id and label must not be empty. Received: {row}")
        index = None
        if row.get("row") not in (None, ""):
            try:
                index = int(row["row"])
            except ValueError as exc:
                raise DatasetError(f"{path} line {line}: row must be an integer. Received: row={row['row']!r}") from exc
        if dataset.task == "classification":
            if text in classes:
                value: Any = classes[text]
            elif text.isdigit() and int(text) < len(classes):
                value = int(text)
            else:
                raise DatasetError(
                    f"{path} line {line}: label {text!r} is not one of the classes {list(dataset.class_names)}."
                )
        else:
            try:
                value = float(text)
            except ValueError as exc:
                raise DatasetError(f"{path} line {line}: a regression label must be a number. Received: {text!r}") from exc
        key = (request_id, index)
        if key in labels:
            raise DatasetError(f"{path} line {line}: request {request_id!r} (row {index}) is labelled twice.")
        labels[key] = value
    if not labels:
        raise DatasetError(f"{path} holds no labels.")
    return labels


def add_logged_rows(
    dataset: Dataset, logs: tuple[str, ...], labels_path: str, *, model_name: str
) -> tuple[Dataset, dict[str, Any], int | None]:
    """The dataset with the labelled logged rows added to its training split, the lineage, and
    the version that served those requests (the new version's parent).

    Raises:
        DatasetError: unreadable logs or labels, no request of `model_name`, inputs that do not
            match the dataset's features, or no logged request with a label.
    """
    from tfstack import export

    try:
        records = export.read_prediction_logs(list(logs))
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc
    served = [r for r in records if r.model_name == model_name]
    if not served:
        names = sorted({r.model_name for r in records})
        raise DatasetError(f"The logs hold no request for model {model_name!r}. They hold: {names}")
    labels = read_labels(labels_path, dataset=dataset)
    features = tuple(export.FeatureSpec(name=f.name, dtype=f.dtype, shape=tuple(f.shape)) for f in dataset.features)
    parts: dict[str, list[np.ndarray]] = {f.name: [] for f in features}
    targets: list[Any] = []
    used = []
    unmatched_inputs = 0
    for record in served:
        rows = export.request_inputs(record, features)
        if rows is None:
            if any((record.request_id, i) in labels or (record.request_id, None) in labels for i in (None, 0)):
                unmatched_inputs += 1
            continue
        count = next(iter(rows.values())).shape[0]
        picked = []
        for i in range(count):
            label = labels.get((record.request_id, i), labels.get((record.request_id, None)))
            if label is not None:
                picked.append((i, label))
        if not picked:
            continue
        index = np.asarray([i for i, _ in picked])
        for feature in features:
            parts[feature.name].append(np.asarray(rows[feature.name])[index].astype(dataset.train.inputs[feature.name].dtype))
        targets += [label for _, label in picked]
        used.append(record)
    if unmatched_inputs:
        raise DatasetError(
            f"{unmatched_inputs} labelled request(s) do not carry the inputs {[f.name for f in features]} of the dataset."
        )
    if not targets:
        raise DatasetError(
            f"No logged request of {model_name!r} has a label in {labels_path} ({len(served)} requests logged, "
            f"{len(labels)} labels); the labels' request_id must be the id the server returned (X-Request-ID)."
        )
    added = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    train = Split(
        inputs={name: np.concatenate([dataset.train.inputs[name], added[name]]) for name in dataset.train.inputs},
        labels=np.concatenate([dataset.train.labels, np.asarray(targets, dtype=dataset.train.labels.dtype)]),
    )
    versions = Counter(r.version for r in used if r.version is not None)
    parent = versions.most_common(1)[0][0] if versions else None
    lineage = {
        "parent_version": parent,
        "logs": export.log_range(used),
        "logged_rows_added": len(targets),
        "labels": {
            "path": str(Path(labels_path).absolute()),
            "fingerprint": export.file_fingerprint(labels_path),
            "labels": len(labels),
        },
    }
    return dataclasses.replace(dataset, train=train), lineage, parent
