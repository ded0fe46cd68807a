"""Every training claim's verdict at every registered scale, from the committed records, written as JSON.

A change to the rule code (hessreg/stats.py, hessreg/rules.py) that should change no verdict is checked with this
script: run it under the old code, commit its output, and tests/test_rules.py recomputes each verdict under the new
code and compares (experiments/params/rules.yaml, ``verdicts_unchanged``). It uses only the API that both codes
share (``book.committed``, ``ChapterResult._judge``, ``Verdict.to_dict``), so it runs against an older checkout
(``PYTHONPATH=<old tree>``). Nothing is trained.

    python experiments/verdicts.py OUT_DIR [--scales cpu noisy ...]
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import yaml

from hessreg import book, chapters, claims
from hessreg.repo import PARAMS, root


def registered_scales() -> list[str]:
    return list(yaml.safe_load((root() / PARAMS / "rules.yaml").read_text()))


def verdicts(scale: str) -> dict[str, dict]:
    """``{claim id: Verdict.to_dict() + {"runs": committed runs of its grid}}`` for every claim trained at
    ``scale``."""
    out = {}
    for cid, c in claims.CLAIMS.items():
        if c.chapter in chapters.GRIDS and chapters.has_params(c.chapter, scale):
            r = book.committed(c.chapter, scale)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[cid] = r._judge(cid, ()).to_dict() | {"runs": len(r.frame)}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--scales", nargs="*", help="default: every scale of experiments/params/rules.yaml")
    args = ap.parse_args(argv)
    valid = registered_scales()
    bad = sorted(set(args.scales or []) - set(valid))
    if bad:
        ap.error(f"unregistered scale(s) {bad}; choose from {valid}")
    for scale in args.scales or valid:
        for cid, v in verdicts(scale).items():
            path = args.out / scale / f"{cid}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(v, indent=1, default=str) + "\n")
            print(f"{scale} {cid}: {v['status']} ({v['runs']} runs)")


if __name__ == "__main__":
    main()
