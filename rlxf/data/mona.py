"""IMF MONA structural conditions: status codes to MET / Non-MET labels, model text, and two train/test splits.

Every column is read as text (`dtype=str, keep_default_na=False`); the literal `NULL` counts as empty in the fields
used here. `Status` is stripped of surrounding spaces and looked up in `STATUS_GROUPS` (the one mapping table);
a code that is not in it is an error. Rows never assessed stay in the table with `label_group='not_assessed'`
and an empty (NaN) `label`, so they cannot be used as labels by accident.

Model input (`text`), from `TEXT_TEMPLATE`:
"Country: {country}. Arrangement: {arr_type}. Classification: {econ_class}. Condition: {condition}"

`condition_type` comes from the optional `SPC_PA_SB` column (`CONDITION_TYPES`; "other" for a code not listed,
"unknown" when the column is absent). It is not in the model text: prior actions are met far more often than
benchmarks (the manifest's `by_condition_type`), so a classifier that reads the condition's wording may learn the
type from it, and a policy rewarded by that classifier may learn to write prior actions.

Splits (both seeded, both over all rows): `split_random` puts a random 20 % of rows in test; `split_arrangement`
puts a random 20 % of arrangements (`ArrID`) in test, so no arrangement is on both sides (conditions of one
arrangement are near-duplicates, which flatters a random split).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from rlxf.data.files import DataError, read_text_csv

# MONA status code -> label group. The source paper groups M and PM as MET, the other assessed outcomes as Non-MET.
STATUS_GROUPS: dict[str, str] = {
    "M": "met",  # met
    "PM": "met",  # partially met
    "NM": "not_met",  # not met
    "W": "not_met",  # waived
    "DL": "not_met",  # delayed
    "MD": "not_met",  # met with delay
    "MOD": "not_met",  # modified
    "Mod": "not_met",  # modified (spelling variant)
    "MMod": "not_met",  # modified (spelling variant)
    "CAN": "not_met",  # cancelled
    "SB": "not_assessed",  # not yet assessed
    "PC": "not_assessed",  # not yet assessed
    "PA": "not_assessed",  # not yet assessed
    "WM": "not_assessed",  # undocumented code
    "": "not_assessed",  # blank
}
CONDITION_TYPES: dict[str, str] = {
    "PA": "prior action",
    "SB": "structural benchmark",
    "SPC": "performance criterion",  # structural performance criterion
    "SAC": "assessment criterion",  # structural assessment criterion (early PRGF arrangements)
}
GROUP_LABELS: dict[str, int | None] = {"met": 1, "not_met": 0, "not_assessed": None}
COLUMNS = (
    "CountryName", "ArrID", "ArrType", "ApprovalDate", "InitialEndDate", "RevisedEndDate", "IniPgmYr", "BoardActDate",
    "ReviewType", "ReviewSequence", "EconDescrpt", "Descpt", "CondtOriginTxt", "SPC_PA_SB", "CondtSource",
    "CondtSourceTxt", "LeadInst", "TestDate", "Status", "Comments",
)
NEEDED = ("CountryName", "ArrID", "ArrType", "EconDescrpt", "Descpt", "Status")
TEXT_TEMPLATE = "Country: {country}. Arrangement: {arr_type}. Classification: {econ_class}. Condition: {condition}"
OUTPUT_COLUMNS = [
    "country", "arr_id", "arr_type", "econ_class", "condition", "condition_type", "status", "label_group", "label",
    "text", "split_random", "split_arrangement",
]
TEST_FRACTION = 0.2


def read_mona(path: Path) -> pd.DataFrame:
    """Read the MONA CSV with every column as text; check that the needed columns are there."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MONA file not found (expected a CSV with columns {','.join(NEEDED)}, ...)")
    frame = read_text_csv(path, f"a MONA CSV with columns {','.join(NEEDED)}, ...")
    missing = [name for name in NEEDED if name not in frame.columns]
    if missing:
        found = ",".join(map(str, frame.columns))
        raise DataError(f"{path}: missing MONA column(s) {','.join(missing)}; found {found}")
    if frame.empty:
        raise DataError(f"{path}: no rows (expected MONA conditions)")
    return frame


def status_groups(status: pd.Series, source: str) -> pd.Series:
    """Map stripped status codes to label groups; an unknown code is an error naming the row and the code."""
    codes = status.str.strip()
    unknown = ~codes.isin(STATUS_GROUPS.keys())
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataError(
            f"{source}: data row {row + 1} has unknown Status code {codes.iloc[row]!r}; "
            f"expected one of {sorted(code for code in STATUS_GROUPS if code)} or blank"
        )
    return codes.map(STATUS_GROUPS)


def _field(values: pd.Series) -> pd.Series:
    values = values.str.strip()
    return values.where(values != "NULL", "")


def model_text(country: str, arr_type: str, econ_class: str, condition: str, template: str = TEXT_TEMPLATE) -> str:
    """The classifier's input text for one condition (see TEXT_TEMPLATE)."""
    return template.format(
        country=country, arr_type=arr_type, econ_class=econ_class.rstrip(". "), condition=condition
    )


# The RLXF study's policy prompt: the policy proposes a condition for a programme described by these three fields.
POLICY_PROMPT_TEMPLATE = (
    "Given the economic indicators and historical performance of {country}, what would be an appropriate policy "
    "proposal under the {arr_type} for achieving {econ_class}? Describe the proposed condition."
)
_CLASS_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)*\.?\s*")


def policy_prompt(country: str, arr_type: str, econ_class: str, template: str = POLICY_PROMPT_TEMPLATE) -> str:
    """The policy's prompt for one programme.

    The classification loses its MONA number ("1.8. Budget ..." -> "budget ...").
    """
    goal = _CLASS_NUMBER.sub("", econ_class).rstrip(". ")
    goal = goal[:1].lower() + goal[1:] if goal[:2] != goal[:2].upper() else goal  # keep acronyms ("VAT ...")
    return template.format(country=country.title(), arr_type=f"{arr_type} arrangement", econ_class=goal)


def programme_prompts(table: pd.DataFrame, format_prompt=None, *, max_prompts: int | None = None, seed: int = 0
                      ) -> tuple[list[str], dict[str, dict[str, str]]]:
    """One policy prompt per distinct (country, arr_type, econ_class) of `table` -> (prompts, prompt -> fields).

    `format_prompt` wraps each prompt (e.g. in the policy's chat template); the mapping is keyed by the wrapped
    prompt, as `rlxf.rewards.ExperienceReward(metadata=...)` expects. `max_prompts` draws a seeded subset.
    """
    missing = [c for c in ("country", "arr_type", "econ_class") if c not in table.columns]
    if missing:
        raise ValueError(f"programme_prompts(): the table lacks the columns {missing}")
    programmes = table[["country", "arr_type", "econ_class"]].drop_duplicates()
    if max_prompts and len(programmes) > max_prompts:
        programmes = programmes.sample(n=max_prompts, random_state=seed)
    prompts, metadata = [], {}
    for row in programmes.to_dict("records"):
        prompt = policy_prompt(row["country"], row["arr_type"], row["econ_class"])
        prompt = format_prompt(prompt) if format_prompt is not None else prompt
        prompts.append(prompt)
        metadata[prompt] = row
    return prompts, metadata


def random_split(n: int, seed: int) -> np.ndarray:
    """'train'/'test' for n rows with a seeded random TEST_FRACTION in test."""
    split = np.full(n, "train", dtype=object)
    split[np.random.default_rng(seed).permutation(n)[: int(round(TEST_FRACTION * n))]] = "test"
    return split


def arrangement_split(arr_ids: pd.Series, seed: int) -> np.ndarray:
    """'train'/'test' per row with a seeded random TEST_FRACTION of arrangements (whole arrangements) in test."""
    groups = np.array(sorted(arr_ids.unique()), dtype=object)
    order = np.random.default_rng(seed).permutation(len(groups))
    test_groups = groups[order[: int(round(TEST_FRACTION * len(groups)))]]
    return np.where(arr_ids.isin(set(test_groups)), "test", "train").astype(object)


def prepare_mona(raw: pd.DataFrame, source: str, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Labels, model text and splits for raw MONA rows; return the table and its manifest section."""
    group = status_groups(raw["Status"], source)
    mona = pd.DataFrame(
        {
            "country": _field(raw["CountryName"]),
            "arr_id": _field(raw["ArrID"]),
            "arr_type": _field(raw["ArrType"]),
            "econ_class": _field(raw["EconDescrpt"]),
            "condition": _field(raw["Descpt"]),
            "condition_type": (raw["SPC_PA_SB"].str.strip().map(CONDITION_TYPES).fillna("other")
                               if "SPC_PA_SB" in raw.columns else "unknown"),
            "status": raw["Status"].str.strip(),
            "label_group": group,
            "label": group.map(GROUP_LABELS).astype("Int64"),
        }
    )
    if (mona["arr_id"] == "").any():
        row = int(np.flatnonzero((mona["arr_id"] == "").to_numpy())[0])
        raise DataError(f"{source}: data row {row + 1} has an empty ArrID; expected an arrangement")
    fields = mona[["country", "arr_type", "econ_class", "condition"]].itertuples(index=False)
    mona["text"] = [model_text(*row) for row in fields]
    # Different seeds for the two splits' generators would be arbitrary; offsetting keeps them independent.
    mona["split_random"] = random_split(len(mona), seed)
    mona["split_arrangement"] = arrangement_split(mona["arr_id"], seed + 1)
    labelled = mona["label"].notna()
    if not labelled.any():
        codes = sorted(set(mona["status"]))
        assessed = sorted(code for code, group in STATUS_GROUPS.items() if group != "not_assessed")
        raise DataError(
            f"{source}: no labelled rows: all {len(mona):,} conditions are not assessed (Status {codes}); "
            f"expected some assessed conditions (Status one of {assessed}) to learn MET / Non-MET from"
        )
    stats = {
        "raw_rows": len(raw),
        "labelled_rows": int(labelled.sum()),
        "not_assessed_rows": int((~labelled).sum()),
        "by_label": {"MET": int((mona["label"] == 1).sum()), "Non-MET": int((mona["label"] == 0).sum())},
        "by_status": {code: int(n) for code, n in mona["status"].value_counts().sort_index().items()},
        "by_condition_type": {kind: {"labelled": int(len(rows)), "met_share": round(float(rows.mean()), 4)}
                              for kind, rows in mona.loc[labelled].groupby("condition_type")["label"]},
        "status_groups": STATUS_GROUPS,
        "arrangements": int(mona["arr_id"].nunique()),
        "countries": int(mona["country"].nunique()),
        "text_template": TEXT_TEMPLATE,
        "split_random": _split_counts(mona, "split_random", labelled),
        "split_arrangement": {
            **_split_counts(mona, "split_arrangement", labelled),
            "arrangements": {
                name: int(mona.loc[mona["split_arrangement"] == name, "arr_id"].nunique()) for name in ("train", "test")
            },
        },
    }
    return mona[OUTPUT_COLUMNS], stats


def _split_counts(mona: pd.DataFrame, column: str, labelled: pd.Series) -> dict:
    return {
        "rows": {name: int((mona[column] == name).sum()) for name in ("train", "test")},
        "labelled_rows": {name: int(((mona[column] == name) & labelled).sum()) for name in ("train", "test")},
    }


def build_mona(path: Path, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Read and prepare the MONA CSV at path."""
    return prepare_mona(read_mona(path), str(path), seed)
