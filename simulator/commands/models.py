"""``python -m simulator models``: the named models, their shapes and parameter counts.

Any of them is a scenario's ``[model] name = "..."`` (other keys of the table
override its values) and ``plan --model``'s argument. The parameter count is
the built model's, which for the Llama models is the published one exactly.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the named models and their parameter counts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=handle)


def rows() -> list[list[str]]:
    """One row per named model: its shape, parameters and source."""
    from ..nn.named import NAMED_MODELS  # imported when the command runs

    out = [
        [
            "name",
            "kind",
            "layers",
            "hidden",
            "heads",
            "kv",
            "ffn",
            "vocab",
            "seq",
            "parameters",
            "source",
        ]
    ]
    for name, m in NAMED_MODELS.items():
        c = m.config
        ffn = c.ffn_hidden if c.kind == "llama" else c.ffn_mult * c.hidden
        kv = c.kv_heads if c.kind == "llama" else c.heads
        params = c.build(0, numerics=False).num_parameters
        out.append(
            [
                name,
                c.kind,
                str(c.layers),
                str(c.hidden),
                str(c.heads),
                str(kv),
                str(ffn),
                str(c.vocab),
                str(c.seq_len),
                f"{params:,}",
                m.source,
            ]
        )
    return out


def handle(args: argparse.Namespace) -> int:
    table = rows()
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for j, row in enumerate(table):
        cells = [
            c.ljust(w) if i in (0, 1, 10) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    return 0
