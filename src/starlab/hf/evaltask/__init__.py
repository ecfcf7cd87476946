"""A small lm-evaluation-harness task that needs no download: continuing sentences of the bundled corpus.

``bbe_continuation.jsonl`` (shipped) holds 48 items. Each is a context of 96 characters of the Bible in Basic
English and four 24-character continuations: the true one and three taken from elsewhere in the text (all
ASCII, so equally long in bytes and in byte tokens). ``make_items`` regenerates the file exactly, so how it was
made stays checkable. :func:`write_task` writes the task's YAML, pointing at the shipped file, into a
directory for ``lm_eval --include_path``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA, TASK = HERE / "bbe_continuation.jsonl", "starlab_bbe_continuation"
CONTEXT, CONTINUATION, ITEMS, CHOICES = 96, 24, 48, 4

YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def make_items(text: str, seed: int = 0) -> list[dict]:
    """``ITEMS`` items from ``text``: contexts at seeded offsets, the true continuation at a seeded position
    among three continuations from other offsets. Only ASCII windows are used."""
    rng = random.Random(seed)
    span = CONTEXT + CONTINUATION
    items = []
    while len(items) < ITEMS:
        start = rng.randrange(0, len(text) - span)
        window = text[start : start + span]
        others = [text[o : o + CONTINUATION] for o in (rng.randrange(0, len(text) - CONTINUATION) for _ in range(3))]
        if not all(piece.isascii() for piece in (window, *others)):
            continue
        choices = [window[CONTEXT:], *others]
        order = list(range(CHOICES))
        rng.shuffle(order)
        items.append({"context": window[:CONTEXT], "choices": [choices[i] for i in order], "label": order.index(0)})
    return items


def write_task(directory: str | Path) -> Path:
    """The task's YAML in ``directory`` (created), pointing at the shipped JSONL; its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{TASK}.yaml"
    path.write_text(YAML.format(task=TASK, data=json.dumps(str(DATA))))
    return path
