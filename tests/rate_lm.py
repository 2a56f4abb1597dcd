"""Tiny local LMs behind a real OpenAI-compatible server, for the rating tests.

``scorer``: a 1-layer byte-level GPT-2, trained for ~2 s to answer " Score: 3" to any prompt of the
test template (short word documents); ``babbler``: the same architecture left random, whose
greedy answers are random bytes (never a score). Both are real ``transformers`` models generating
through :mod:`retriever.rate.local_server`.
"""

from __future__ import annotations

import random

TEMPLATE = "Rate: {text}\nScore:"
WORDS = "the of call cat dog river sum story hero said tool api".split()


def word_docs(n: int, seed: int = 0, prefix: str = "d") -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "id": f"{prefix}{i}",
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9))),
        }
        for i in range(n)
    ]


# the 1-layer byte-level GPT-2 of every model here (no dropout: generation is deterministic)
SIZES = dict(
    n_positions=256, n_embd=32, n_layer=1, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
    attn_pdrop=0.0,
)  # fmt: skip


def _model(seed: int):
    from retriever.confirm.tiny_panel import random_byte_lm

    return random_byte_lm(seed, **SIZES)


def random_lm(seed: int = 1):
    from retriever.confirm.tiny_panel import byte_tokenizer
    from retriever.rate.local_server import LocalLM

    return LocalLM(_model(seed), byte_tokenizer())


def trained_scorer(answer: str = " Score: 3", steps: int = 150, seed: int = 0):
    """A model that answers ``answer`` to chat prompts ``TEMPLATE`` with a short word document."""
    import torch

    from retriever.confirm.tiny_panel import EOS_ID, byte_tokenizer
    from retriever.rate.local_server import LocalLM, format_chat

    rng = random.Random(seed)
    m = _model(seed)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    target = list(answer.encode()) + [EOS_ID]
    for _ in range(steps):
        seqs, labels = [], []
        for _ in range(8):
            doc = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10)))
            msgs = [{"role": "user", "content": TEMPLATE.replace("{text}", doc)}]
            p = list(format_chat(msgs).encode())
            seqs.append(p + target)
            labels.append([-100] * len(p) + target)
        width = max(map(len, seqs))
        x = torch.tensor([s + [EOS_ID] * (width - len(s)) for s in seqs])
        y = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
        loss = m(input_ids=x, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return LocalLM(m, byte_tokenizer())


def save_random_lm(folder, seed: int = 2):
    """The random model saved as a folder ``AutoModelForCausalLM`` loads (a band reference)."""
    from retriever.confirm.tiny_panel import save_random_byte_lm

    save_random_byte_lm(folder, seed, **SIZES)
    return folder
