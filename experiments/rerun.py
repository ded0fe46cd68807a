"""Rerun a committed record by its key and print how the rerun differs from it.

    python experiments/rerun.py 0d1f8e2c5a7b9e13            # one record (results/records/<key>.json)
    python experiments/rerun.py 0d1f8e2c5a7b9e13 --attest   # and, if identical, record this machine as one where
                                                            # its bits hold (results/reruns/<key>.json)

The rerun uses the record's thread count. Whether it must be identical or only close depends on this machine
(``hessreg.provenance.bits_case``): identical where the record's signature (torch, BLAS, CPU model and
instruction sets, ATen's CPU capability, threads) — or an attested one — equals this machine's; elsewhere within
``hessreg.provenance.TOLERANCE``. Exit status 0 when the rerun meets what the case asks, 1 when it does not.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import provenance, train  # noqa: E402
from hessreg.config import Config  # noqa: E402
from hessreg.results import store_for  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("keys", nargs="+", metavar="KEY", help="record keys (file names in results/records)")
    ap.add_argument("--attest", action="store_true", help="record this machine's signature where a rerun is identical")
    ap.add_argument("--json", action="store_true", help="print one JSON line per record instead of text")
    args = ap.parse_args(argv)
    store = store_for("cpu")
    for key in args.keys:
        if not (store.root / f"{key}.json").exists():
            ap.exit(2, f"{ap.prog}: error: no record {key} in {store.root}\n")
    ok = True
    for key in args.keys:
        record = store.load(key)
        torch.set_num_threads(record.provenance.get("threads", 1))
        case, why = provenance.bits_case(record.provenance, provenance.attested(key))
        again = train.run(Config.from_dict(record.config))
        diff = provenance.differences(record, again)
        bad = ([] if diff["identical"] else ["not identical"]) if case == "bitwise" else \
            provenance.within_tolerance(diff)
        ok &= not bad
        if args.attest and diff["identical"]:
            provenance.attest(key, again.provenance)
        if args.json:
            print(json.dumps({"key": key, "method": record.config["method"], "case": case, "why": why,
                              "ok": not bad} | diff))
            continue
        print(f"{key} ({record.config['method']}): {case} expected — {why}")
        print(f"  identical: {diff['identical']}; first differing epoch: {diff['first_differing_epoch']}; "
              f"epoch-1 train loss rel. diff {diff['first_epoch_train_loss_rel']:.2e}; test acc diff "
              f"{diff['test_acc_pp']:.2f} pp" + (f"; val acc diff {diff['val_acc_pp']:.2f} pp"
                                                 if diff["val_acc_pp"] is not None else ""))
        print("  → " + ("as expected" if not bad else "NOT as expected: " + "; ".join(bad)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
