"""A sample BES scorer for the Adult Census Income data set, and a generator of such data.

`score(frame, global_parameters)` adds `Scored Labels` (">50K" or "<=50K") and
`Scored Probabilities` from a fixed logistic model over the numeric and a few categorical
columns: a stand-in for a trained binary classifier, deterministic and fast. The global
parameter `Threshold` (default 0.5) moves the label cut-off; `SecondsPerChunk` (default 0)
adds a pause per chunk to imitate a heavier model in demos.

`generate_csv(rows, seed)` yields the CSV text of a synthetic data set with the columns of
the original, in pieces, so files of millions of rows can be written without holding them.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
           "income"]
WORKCLASSES = ["Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov", "State-gov"]
EDUCATIONS = [("HS-grad", 9), ("Some-college", 10), ("Bachelors", 13), ("Masters", 14), ("Assoc-voc", 11),
              ("11th", 7), ("Doctorate", 16), ("Prof-school", 15)]
MARITAL = ["Married-civ-spouse", "Never-married", "Divorced", "Separated", "Widowed"]
OCCUPATIONS = ["Prof-specialty", "Craft-repair", "Exec-managerial", "Adm-clerical", "Sales", "Other-service",
               "Machine-op-inspct", "Tech-support"]
RELATIONSHIPS = ["Husband", "Not-in-family", "Own-child", "Unmarried", "Wife"]
RACES = ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"]
COUNTRIES = ["United-States", "Mexico", "Philippines", "Germany", "Canada", "India"]

_WEIGHTS = {"age": 0.03, "education-num": 0.3, "hours-per-week": 0.03, "capital-gain": 0.0003,
            "capital-loss": 0.0007}
_BIAS = -8.0
_MARRIED_BONUS = 1.2
_EXEC_BONUS = 0.8


def score(frame: pd.DataFrame, global_parameters: dict) -> pd.DataFrame:
    threshold = float(global_parameters.get("Threshold", 0.5))
    pause = float(global_parameters.get("SecondsPerChunk", 0))
    missing = [c for c in _WEIGHTS if c not in frame.columns]
    if missing:
        raise ValueError(f"input lacks column(s) {', '.join(missing)}")
    logit = np.full(len(frame), _BIAS)
    for column, weight in _WEIGHTS.items():
        logit += weight * pd.to_numeric(frame[column], errors="coerce").fillna(0).to_numpy(dtype=float)
    if "marital-status" in frame.columns:
        logit += _MARRIED_BONUS * (frame["marital-status"] == "Married-civ-spouse").to_numpy()
    if "occupation" in frame.columns:
        logit += _EXEC_BONUS * frame["occupation"].isin(["Exec-managerial", "Prof-specialty"]).to_numpy()
    probability = 1.0 / (1.0 + np.exp(-logit))
    if pause:
        time.sleep(pause)
    scored = frame.copy()
    scored["Scored Labels"] = np.where(probability >= threshold, ">50K", "<=50K")
    scored["Scored Probabilities"] = probability.round(6)
    return scored


# What the scorer reads (published in the service's swagger.json and checked before scoring).
score.input_columns = {"age": "integer", "education-num": "integer", "marital-status": "string",  # type: ignore
                       "occupation": "string", "capital-gain": "integer", "capital-loss": "integer",
                       "hours-per-week": "integer"}


def _frame(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    education = rng.integers(0, len(EDUCATIONS), rows)
    age = rng.integers(17, 80, rows)
    hours = np.clip(rng.normal(40, 12, rows).round(), 1, 99).astype(int)
    gain = np.where(rng.random(rows) < 0.08, rng.integers(1000, 20000, rows), 0)
    loss = np.where(rng.random(rows) < 0.05, rng.integers(100, 2500, rows), 0)
    frame = pd.DataFrame({
        "age": age,
        "workclass": np.array(WORKCLASSES)[rng.integers(0, len(WORKCLASSES), rows)],
        "fnlwgt": rng.integers(20000, 800000, rows),
        "education": np.array([e[0] for e in EDUCATIONS])[education],
        "education-num": np.array([e[1] for e in EDUCATIONS])[education],
        "marital-status": np.array(MARITAL)[rng.integers(0, len(MARITAL), rows)],
        "occupation": np.array(OCCUPATIONS)[rng.integers(0, len(OCCUPATIONS), rows)],
        "relationship": np.array(RELATIONSHIPS)[rng.integers(0, len(RELATIONSHIPS), rows)],
        "race": np.array(RACES)[rng.integers(0, len(RACES), rows)],
        "sex": np.where(rng.random(rows) < 0.67, "Male", "Female"),
        "capital-gain": gain,
        "capital-loss": loss,
        "hours-per-week": hours,
        "native-country": np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), rows)],
    })
    logit = _BIAS + sum(w * frame[c].to_numpy(dtype=float) for c, w in _WEIGHTS.items())
    frame["income"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), ">50K", "<=50K")
    return frame[COLUMNS]


def generate_csv(rows: int, seed: int = 0, piece_rows: int = 100_000):
    """Yield the CSV (header first) of `rows` synthetic census rows; same seed, same bytes."""
    rng = np.random.default_rng(seed)
    written = 0
    while written < rows or written == 0:
        count = min(piece_rows, rows - written)
        yield _frame(rng, count).to_csv(index=False, header=written == 0)
        written += count
        if count == 0:
            break


def main(argv=None) -> int:
    """`python -m samples.census --rows N [--seed S] [--out FILE]`: a CSV the sample service
    scores, on standard output or into FILE."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m samples.census", description=main.__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write here instead of standard output")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if not args.out:
        sys.stdout.writelines(generate_csv(args.rows, args.seed))
        return 0
    with open(args.out, "w", newline="", encoding="utf-8") as out:
        out.writelines(generate_csv(args.rows, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
