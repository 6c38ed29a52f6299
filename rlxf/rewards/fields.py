"""Structured fields of a model text as one-hot features beside its TF-IDF n-grams.

A MONA model text names its fields, `Type: prior action. Country: ... Arrangement: SBA. Classification: ...`. TF-IDF
dilutes such a field among the text's words (its weight shrinks as the condition grows longer); a one-hot column per
field value gives a linear model the field itself, at the same strength for every text. The fields are read back
from the text, so a classifier with them still takes texts in and the rewards' API is unchanged. A text that lacks a
field (the policy's reward does not know a proposal's condition type) or names a value never seen in training gets
zeros in that field's columns: the model falls back on the words and the intercept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin


def field_pattern(name: str) -> re.Pattern:
    """`Name: value.` up to the next `Word: ` or the end; the value may hold dots ("1.8. Budget ...")."""
    if not re.fullmatch(r"[A-Z][A-Za-z ]*", name):
        raise ValueError(f"a field name is a capitalised word (as in 'Type: ...'), got {name!r}")
    return re.compile(rf"(?:^|\. ){re.escape(name)}: (.*?)\.?(?= [A-Z][A-Za-z]*: |$)")


def read_field(text: str, name: str) -> str:
    """The value of field `name` in `text` ("" when the text does not name it)."""
    found = field_pattern(name).search(text)
    return found.group(1).strip() if found else ""


class FieldOneHot(TransformerMixin, BaseEstimator):
    """One-hot columns for the values of named fields read from each text (sparse, one block per field)."""

    def __init__(self, fields: Sequence[str] = ()):
        self.fields = fields

    def fit(self, texts, y=None):
        for name in self.fields:
            field_pattern(name)
        self.categories_ = [sorted({read_field(t, name) for t in texts} - {""}) for name in self.fields]
        return self

    def transform(self, texts):
        texts = list(texts)
        blocks = []
        for name, values in zip(self.fields, self.categories_, strict=True):
            index = {value: i for i, value in enumerate(values)}
            rows, cols = [], []
            for row, text in enumerate(texts):
                col = index.get(read_field(text, name))
                if col is not None:
                    rows.append(row)
                    cols.append(col)
            blocks.append(sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(values))))
        return sparse.hstack(blocks, format="csr") if blocks else sparse.csr_matrix((len(texts), 0))

    def get_feature_names_out(self, input_features=None):
        return np.array([f"{name}={value}" for name, values in zip(self.fields, self.categories_, strict=True)
                         for value in values], dtype=object)
