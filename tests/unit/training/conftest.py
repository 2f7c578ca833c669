"""Small data sources for the training tests, written into tmp dirs (nothing is committed).

Fixtures:
  people_csv (function): a 90-row CSV with a numeric column whose header needs sanitising
      ("Age (years)"), a string column (city), a numeric column (income) and a string target
      (label: yes/no) that depends on age and city, so a model can learn it.
  image_dir (function): an image folder with classes "dark" and "light", 12 PNGs each.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def people_csv(tmp_path: Path) -> Path:
    rng = random.Random(0)
    path = tmp_path / "people data.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Age (years)", "city", "income", "label"])
        for _ in range(90):
            city = rng.choice(["paris", "rome", "oslo"])
            age = rng.randint(18, 80)
            writer.writerow([age, city, f"{rng.random() * 100:.2f}", "yes" if city == "oslo" or age > 60 else "no"])
    return path


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    from PIL import Image

    root = tmp_path / "shades"
    rng = np.random.default_rng(0)
    for name, low, high in (("dark", 0, 80), ("light", 170, 255)):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(low, high, size=(20, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels, mode="RGB").save(folder / f"{i}.png")
    (root / "dark" / "notes.txt").write_text("not an image; ignored")
    return root
