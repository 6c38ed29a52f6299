"""Plato (Jowett, Project Gutenberg): dialogue text to speaker turns, with Socrates' replies marked.

Strategy, in order:
1. Decode as UTF-8 with or without a byte-order mark; CRLF becomes LF.
2. Keep the text between Gutenberg's `*** START OF` and `*** END OF` lines.
3. Drop Jowett's introduction: the dialogue starts after the last line that begins with
   "PERSONS OF THE DIALOGUE" (the Republic also lists it in its table of contents).
4. A turn starts at a line `NAME:  text` whose NAME is in capitals (at most three words, e.g. `YOUNG SOCRATES`)
   and is not a heading (`SCENE`, `PERSONS OF THE DIALOGUE`, `PLACE OF THE NARRATION`, ...). Following lines are
   joined to it (spaces collapsed; a blank line keeps a paragraph break) until the next turn. Lines before the
   first turn (the persons list, the scene) and headings inside the dialogue (`BOOK II.`, `THE END`) are dropped.
5. Narrated dialogues and speeches (Republic, Symposium, Protagoras, Phaedo, Euthydemus, Charmides, Parmenides)
   and monologues (Apology, Timaeus, Critias) have few `NAME:` turns, or one turn that holds most of the text
   (the narration). They are left out of the turn-level data and reported as skipped with the reason;
   see `SKIP_RULES`.
6. Socrates' turns (speaker exactly `SOCRATES`; `YOUNG SOCRATES` is someone else) get a seeded random 90/10
   train/test split, so held-out perplexity is measured on unseen turns; other turns have no split.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rlxf.data.files import DataError, check_utf8

START_RE = re.compile(r"^\*\*\*\s*START OF.*$", re.MULTILINE)
END_RE = re.compile(r"^\*\*\*\s*END OF", re.MULTILINE)
PERSONS_RE = re.compile(r"^[ \t]*PERSONS OF THE DIALOGUE.*$", re.MULTILINE)
TITLE_RE = re.compile(r"^Title:\s*(.+?)\s*$", re.MULTILINE)
SPEAKER_RE = re.compile(r"^\s*([A-Z][A-Z'\-]*(?: [A-Z][A-Z'\-]*){0,2}):(?:\s+(.*))?$")
NOT_SPEAKERS = frozenset(
    {"SCENE", "PERSONS OF THE DIALOGUE", "PLACE OF THE NARRATION", "NOTE", "NOTES", "FOOTNOTE", "FOOTNOTES"}
)
HEADING_RE = re.compile(r"^\s*(?:BOOK [IVXLC]+|THE END)\.?\s*$")
SOCRATES = "SOCRATES"
COLUMNS = ["dialogue", "turn_index", "previous_speaker", "previous", "speaker", "utterance", "is_socrates", "split"]


@dataclass(frozen=True)
class SkipRules:
    """When a dialogue counts as narrated (or a monologue) and is left out of the turn-level set."""

    min_turns: int = 10
    """Fewer `NAME:` turns than this: the text is narrated or a speech."""
    min_speakers: int = 2
    """Fewer distinct speakers than this: not a conversation."""
    max_turn_share: float = 0.4
    """One turn holding more than this share of the dialogue's words is a narration or a monologue."""


SKIP_RULES = SkipRules()


@dataclass(frozen=True)
class Dialogue:
    """One parsed file: its title, its turns (speaker, utterance), and why it was skipped (None if kept)."""

    title: str
    turns: list[tuple[str, str]]
    skip_reason: str | None


def normalize_newlines(raw: bytes | str) -> str:
    """Decode (dropping a UTF-8 byte-order mark) and turn CRLF/CR into LF."""
    text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw.lstrip("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def gutenberg_title(text: str, fallback: str) -> str:
    """The `Title:` line of the Gutenberg header without a leading 'The ', else the fallback."""
    match = TITLE_RE.search(text)
    title = match.group(1) if match else fallback
    return title[4:] if title.startswith("The ") else title


def strip_gutenberg(text: str, source: str) -> str:
    """The text between the `*** START OF` and `*** END OF` lines."""
    start, end = START_RE.search(text), END_RE.search(text)
    if start is None or end is None or end.start() < start.end():
        raise DataError(f"{source}: expected Project Gutenberg '*** START OF' and '*** END OF' marker lines")
    return text[start.end() : end.start()]


def dialogue_body(text: str) -> str | None:
    """The text after the last 'PERSONS OF THE DIALOGUE' line, or None if there is none (a speech)."""
    matches = list(PERSONS_RE.finditer(text))
    return text[matches[-1].end() :] if matches else None


def speaker_of(line: str) -> tuple[str, str] | None:
    """(NAME, rest of line) if the line opens a turn, else None."""
    match = SPEAKER_RE.match(line)
    if match is None or match.group(1) in NOT_SPEAKERS:
        return None
    return match.group(1), match.group(2) or ""


def extract_turns(body: str) -> list[tuple[str, str]]:
    """Split a dialogue body into (speaker, utterance) turns; continuation lines are joined to their turn."""
    turns: list[tuple[str, list[list[str]]]] = []
    for line in body.split("\n"):
        opened = speaker_of(line)
        if opened is not None:
            turns.append((opened[0], [[opened[1].strip()] if opened[1].strip() else []]))
        elif turns and not HEADING_RE.match(line):
            paragraphs = turns[-1][1]
            if line.strip():
                paragraphs[-1].append(line.strip())
            elif paragraphs[-1]:
                paragraphs.append([])
    return [(speaker, _join(paragraphs)) for speaker, paragraphs in turns]


def _join(paragraphs: list[list[str]]) -> str:
    # Jowett puts two spaces after a sentence; collapse runs of whitespace inside a paragraph.
    return "\n\n".join(" ".join(" ".join(lines).split()) for lines in paragraphs if lines)


def skip_reason(turns: list[tuple[str, str]], body: str, rules: SkipRules = SKIP_RULES) -> str | None:
    """Why these turns are not a usable conversation (narrated, speech, monologue), or None."""
    if len(turns) < rules.min_turns:
        return f"narrated or a speech: only {len(turns)} 'NAME:' turns (fewer than {rules.min_turns})"
    speakers = {speaker for speaker, _ in turns}
    if len(speakers) < rules.min_speakers:
        return f"only {len(speakers)} speaker(s): {sorted(speakers)}"
    words = max(len(body.split()), 1)
    longest = max(len(utterance.split()) for _, utterance in turns)
    if longest / words > rules.max_turn_share:
        return (
            f"narrated or a monologue: one turn holds {longest / words:.0%} of the words "
            f"(more than {rules.max_turn_share:.0%})"
        )
    return None


def parse_dialogue(path: Path, rules: SkipRules = SKIP_RULES) -> Dialogue:
    """Read one Gutenberg file and return its title, turns and skip reason."""
    raw = Path(path).read_bytes()
    check_utf8(raw, path, "a Project Gutenberg text")
    text = normalize_newlines(raw)
    if not text.strip():
        raise DataError(f"{path}: the file is empty (expected a Project Gutenberg text of a Plato dialogue)")
    title = gutenberg_title(text, Path(path).stem)
    body = dialogue_body(strip_gutenberg(text, str(path)))
    if body is None:
        return Dialogue(title, [], "no 'PERSONS OF THE DIALOGUE' line: a speech, not a dialogue")
    turns = extract_turns(body)
    return Dialogue(title, turns, skip_reason(turns, body, rules))


def turns_frame(dialogues: list[Dialogue]) -> pd.DataFrame:
    """Rows (dialogue, turn_index, previous_speaker, previous, speaker, utterance, is_socrates) of kept dialogues.

    The first turn of a dialogue has empty `previous_speaker` and `previous`.
    """
    rows = []
    for dialogue in dialogues:
        if dialogue.skip_reason is not None:
            continue
        previous_speaker, previous = "", ""
        for index, (speaker, utterance) in enumerate(dialogue.turns):
            rows.append((dialogue.title, index, previous_speaker, previous, speaker, utterance, speaker == SOCRATES))
            previous_speaker, previous = speaker, utterance
    return pd.DataFrame(rows, columns=COLUMNS[:-1])


def split_socrates(turns: pd.DataFrame, seed: int, test_fraction: float = 0.1) -> pd.Series:
    """'train'/'test' for Socrates' turns (seeded random, test_fraction held out), None for the others."""
    split = pd.Series([None] * len(turns), index=turns.index, dtype=object)
    socratic = turns.index[turns["is_socrates"].to_numpy()]
    order = np.random.default_rng(seed).permutation(len(socratic))
    n_test = int(round(test_fraction * len(socratic)))
    split[socratic] = "train"
    split[socratic[order[:n_test]]] = "test"
    return split


def build_plato(plato_dir: Path, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Parse every `*.txt` under plato_dir; return the turn table and its manifest section."""
    files = sorted(Path(plato_dir).glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{plato_dir}: expected Project Gutenberg Plato texts (*.txt), found none")
    # A copy of a file (same bytes) is read once: twice would double its turns and put the same ones in train and
    # test (rlxf.data.hydrate says which file it skipped).
    by_content: dict[str, Path] = {}
    for path in files:
        by_content.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    files = sorted(by_content.values())
    dialogues = [parse_dialogue(path) for path in files]
    if all(dialogue.skip_reason is not None for dialogue in dialogues):
        reasons = "; ".join(
            f"{path.name}: {dialogue.skip_reason}" for path, dialogue in zip(files, dialogues, strict=True)
        )
        raise DataError(
            f"{plato_dir}: no speaker-labelled turns: all {len(files)} file(s) are narrated dialogues, speeches or "
            f"monologues ({reasons}); expected at least one dialogue whose speakers are labelled 'NAME:  text' "
            "(e.g. Crito, Meno, Euthyphro)"
        )
    turns = turns_frame(dialogues)
    turns["split"] = split_socrates(turns, seed)
    kept = [d for d in dialogues if d.skip_reason is None]
    stats = {
        "files": len(files),
        "dialogues": len(kept),
        "turns": len(turns),
        "socrates_turns": int(turns["is_socrates"].sum()),
        "turns_by_dialogue": {d.title: len(d.turns) for d in kept},
        "socrates_turns_by_dialogue": {d.title: sum(s == SOCRATES for s, _ in d.turns) for d in kept},
        "split": {name: int((turns["split"] == name).sum()) for name in ("train", "test")},
        "skipped": {d.title: d.skip_reason for d in dialogues if d.skip_reason is not None},
        "skip_rules": {"min_turns": SKIP_RULES.min_turns, "min_speakers": SKIP_RULES.min_speakers,
                       "max_turn_share": SKIP_RULES.max_turn_share},
    }
    return turns, stats
