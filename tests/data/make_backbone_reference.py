"""Reference weights and logits of default-backbone models, made by starlab at commit 3f966b2 (before the
backbone genes were built into Backbone) for tests/test_backbone_genes.py. Regenerate only from that source:

    git archive 3f966b2 src | tar -x -C /tmp/ref
    PYTHONPATH=/tmp/ref/src python tests/data/make_backbone_reference.py tests/data/backbone_reference.pt
"""

import sys

import torch

from starlab.genome import Genome
from starlab.liv import LIVConfig
from starlab.model import Backbone

CASES = [
    ("11111-91111", {}),
    ("11112-91111-11212-11211-91111", {"tie_embeddings": False, "max_positions": 12}),
    ("51111-81111-12,1,1,1,1-71111-61112-61112", {}),
]


def main(path: str) -> None:
    config = LIVConfig(head_dim=8, recurrence_head_dim=8, scan_chunk=4)
    tokens = torch.randint(0, 11, (2, 9), generator=torch.Generator().manual_seed(7))
    out = {"tokens": tokens, "cases": []}
    for text, kwargs in CASES:
        torch.manual_seed(3)
        model = Backbone(Genome.parse(text), 16, 11, config, **kwargs)
        with torch.no_grad():
            logits = model(tokens)
            state, steps = model.init_state(2), []
            for t in range(tokens.shape[1]):
                step, state = model.step(tokens[:, t], state)
                steps.append(step)
        case = {"genome": text, "kwargs": kwargs, "state_dict": model.state_dict(), "logits": logits}
        out["cases"].append({**case, "step_logits": torch.stack(steps, 1)})
    torch.save(out, path)


if __name__ == "__main__":
    main(sys.argv[1])
