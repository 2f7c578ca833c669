"""A trained model published through export predicts the same from disk, on RAW test rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfstack.training import TrainConfig, train


def test_published_csv_model_matches_the_keras_model_on_the_test_split(tmp_path: Path, people_csv: Path) -> None:
    from tfstack import export
    import tensorflow as tf

    result = train(
        TrainConfig(csv_path=str(people_csv), target="label", epochs=2, hidden=(8,), run_dir=str(tmp_path / "run")),
        progress=False,
    )
    published = export.publish(result.export_spec(), tmp_path / "models")
    assert published.path == tmp_path / "models" / "people_data" / "1"

    test = result.dataset.test.inputs
    raw = {
        "Age_years": tf.constant(test["Age_years"]),
        "city": tf.constant(test["city"].astype(str).tolist()),
        "income": tf.constant(test["income"]),
    }
    expected = result.model.predict(raw, verbose=0)
    serving = tf.saved_model.load(str(published.path)).signatures["serving_default"]
    outputs = serving(**raw)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(outputs["class_id"].numpy(), expected.argmax(axis=1))
    labels = [v.decode() for v in outputs["class_label"].numpy()]
    assert labels == [result.dataset.class_names[i] for i in expected.argmax(axis=1)]
