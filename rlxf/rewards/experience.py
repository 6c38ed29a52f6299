"""The experience reward: P(MET) of a proposed IMF programme condition, from the trained MONA classifier."""

from __future__ import annotations

from collections.abc import Mapping

from rlxf.data.mona import TEXT_TEMPLATE as MONA_TEXT_TEMPLATE  # one template for the data and the reward
from rlxf.data.mona import model_text
from rlxf.rewards.classifiers import ClassifierReward

MONA_METADATA_FIELDS = ("country", "arr_type", "econ_class")


class ExperienceReward(ClassifierReward):
    """P(MET | country, arrangement type, classification, proposed condition) from a trained MONA classifier.

    The completion is the proposed condition; the rest comes per prompt, either from keyword lists `country`,
    `arr_type`, `econ_class` (GRPO passes extra dataset columns this way) or, when those are absent, from the
    `metadata` mapping prompt -> {"country": ..., "arr_type": ..., "econ_class": ...} given at construction.
    The classifier reads `template` filled in (default: the data's `MONA_TEXT_TEMPLATE`); the completion is
    stripped of surrounding whitespace, as the data's conditions are.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        met_label: int | str = 1,
        metadata: Mapping[str, Mapping[str, str]] | None = None,
        template: str = MONA_TEXT_TEMPLATE,
        batch_size: int = 32,
        max_length: int = 256,
        name: str = "experience_p_met",
    ):
        for key in (*MONA_METADATA_FIELDS, "condition"):
            if "{" + key + "}" not in template:
                raise ValueError(f"template must contain the field {{{key}}}, got {template!r}")
        self.template = template
        self.metadata = dict(metadata) if metadata is not None else None
        super().__init__(
            model, tokenizer, label=met_label, output="probability", batch_size=batch_size, max_length=max_length,
            name=name,
        )

    def _fields(self, prompts: list[str], kwargs: dict) -> list[dict[str, str]]:
        given = [key for key in MONA_METADATA_FIELDS if kwargs.get(key) is not None]
        if given:
            missing = [key for key in MONA_METADATA_FIELDS if key not in given]
            if missing:
                raise ValueError(f"ExperienceReward got metadata keyword(s) {given} but not {missing}: give all three")
            rows = []
            for key in MONA_METADATA_FIELDS:
                values = kwargs[key]
                if isinstance(values, str) or len(values) != len(prompts):
                    raise ValueError(f"keyword {key!r} must be a list with one entry per prompt ({len(prompts)})")
            for index in range(len(prompts)):
                row = {key: kwargs[key][index] for key in MONA_METADATA_FIELDS}
                for key, value in row.items():
                    if not isinstance(value, str):
                        raise TypeError(f"{key}[{index}] must be a str, got {type(value).__name__}")
                rows.append(row)
            return rows
        if self.metadata is None:
            raise ValueError(
                "ExperienceReward needs country/arr_type/econ_class per prompt: pass them as keyword lists "
                "or give a prompt -> metadata mapping at construction"
            )
        rows = []
        for index, prompt in enumerate(prompts):
            row = self.metadata.get(prompt)
            if row is None:
                raise ValueError(f"prompts[{index}] ({prompt[:60]!r}...) is not in the metadata mapping")
            missing = [key for key in MONA_METADATA_FIELDS if not isinstance(row.get(key), str)]
            if missing:
                raise ValueError(f"metadata for prompts[{index}] lacks string field(s) {missing}")
            rows.append(row)
        return rows

    def texts(self, prompts: list[str], completions: list[str], **kwargs) -> list[str]:
        """The classifier inputs: the template filled with each prompt's metadata and the completion."""
        rows = self._fields(prompts, kwargs)
        return [
            model_text(row["country"], row["arr_type"], row["econ_class"], completion.strip(), template=self.template)
            for row, completion in zip(rows, completions, strict=True)
        ]
