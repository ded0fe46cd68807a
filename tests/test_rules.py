"""Frozen rules: every scale is judged with the rule code it was registered with (experiments/params/rules.yaml),
so a change to hessreg/stats.py or hessreg/rules.py fails here until the scales it judges are re-registered — and
a re-registration after a scale's runs must point at the verdicts under the other rule code, which its chapters
print beside the new ones."""
import json

import yaml

from hessreg import chapters, claims, results, rules
from hessreg.repo import PARAMS, root

REGISTRY = root() / PARAMS / "rules.yaml"


def registry() -> dict:
    return yaml.safe_load(REGISTRY.read_text())


def scales_with_records() -> set[str]:
    """Scales (other than smoke) with at least one committed record of their grids."""
    stored = {p.stem for p in (root() / "results" / "records").glob("*.json")}
    out = set()
    for scale in chapters.SCALES[1:]:
        for chapter in chapters.GRIDS:
            if chapters.has_params(chapter, scale) and any(
                    c.key in stored for c in chapters.configs(chapter, chapters.load_params(chapter, scale))):
                out.add(scale)
                break
    return out


def test_every_scale_with_records_is_registered():
    assert scales_with_records() <= set(registry()), "a scale has records but no registered rule code"


def test_the_rule_code_is_the_registered_one():
    now = rules.rules_hash()
    for scale, entry in registry().items():
        assert entry["current"] == now, (
            f"the rule code's hash is {now}, but the {scale} scale is registered with {entry['current']}: re-register "
            f"it in {REGISTRY.name} (before its runs; after them, with both verdicts shown in its chapters)")
        hashes = [entry["registered"].get("hash")] + [r["hash"] for r in entry.get("reregistered", [])]
        assert now in hashes, f"{scale}: the current hash {now} has no registration entry"


def test_a_reregistration_after_the_runs_keeps_the_other_reading():
    for scale, entry in registry().items():
        for r in entry.get("reregistered", []):
            if r.get("after_runs"):
                assert r.get("both_verdicts") or r.get("verdicts_unchanged"), (
                    f"{scale}: a re-registration after the runs names both_verdicts or verdicts_unchanged")
                assert r["why"].strip(), f"{scale}: a re-registration says why"
                if not r.get("both_verdicts"):
                    continue
                folder = root() / r["both_verdicts"]
                saved = {json.loads(p.read_text())["claim_id"] for p in folder.glob("*.json")}
                trained = {c.id for c in claims.CLAIMS.values() if c.chapter in chapters.GRIDS}
                assert trained <= saved, f"{scale}: no stored verdict under the other rules for {trained - saved}"


# the parts' fields that only the picture reads: added by the 2016df66d134a71a re-registration
DATA_ONLY = {"cells", "band", "failures"}


def test_a_reregistration_that_keeps_the_verdicts_keeps_them():
    """Where the current rule code was registered as changing no verdict (``verdicts_unchanged``), every verdict
    stored under the old code whose grid has as many committed runs now is the same — status, statistic, rule,
    effect, every part — under the current code."""
    from experiments.verdicts import verdicts
    compared = 0
    for scale, entry in registry().items():
        for r in entry.get("reregistered", []):
            if r["hash"] != entry["current"] or not r.get("verdicts_unchanged"):
                continue
            folder = root() / r["verdicts_unchanged"] / scale
            assert folder.is_dir(), f"{scale}: no verdicts stored in {folder}"
            now = verdicts(scale)
            for path in sorted(folder.glob("*.json")):
                before = json.loads(path.read_text())
                after = now[before["claim_id"]]
                if after["runs"] != before["runs"]:  # more of the grid committed since: a new verdict
                    continue
                after["parts"] = [{k: v for k, v in p.items() if k not in DATA_ONLY} for p in after["parts"]]
                assert json.loads(json.dumps(after, default=str)) == before, f"{scale} {path.stem} changed"
                compared += 1
    assert compared or not any(r.get("verdicts_unchanged") for e in registry().values()
                               for r in e.get("reregistered", []) if r["hash"] == e["current"])


def test_the_hash_covers_the_rule_code(tmp_path, monkeypatch):
    """Editing either rule file changes the hash (the test above then fails)."""
    before = rules.rules_hash()
    for name in rules.RULE_FILES:
        (tmp_path / name).write_bytes((root() / "hessreg" / name).read_bytes())
    monkeypatch.setattr(rules, "__file__", str(tmp_path / "rules.py"))
    assert rules.rules_hash() == before
    (tmp_path / "stats.py").write_text((tmp_path / "stats.py").read_text() + "\n# a changed rule\n")
    assert rules.rules_hash() != before


def test_records_come_after_their_scale_registration():
    """A scale registered before its runs (``before_runs``) has every record of its grids (calibration cells
    excepted) made at the registering commit or a descendant of it (the record's provenance commit)."""
    import subprocess
    calibration = {c.key for c in chapters.configs("appendix_noisy_scale", chapters.load_params("appendix_noisy_scale",
                                                                                               "noisy"))}
    for scale, entry in registry().items():
        if not entry["registered"].get("before_runs"):
            continue
        first = subprocess.run(["git", "log", "--reverse", "--format=%H", "-S", f"{scale}:", "--", str(REGISTRY)],
                               capture_output=True, text=True, cwd=root()).stdout.split()
        if not first:  # an uncommitted registration: nothing can have run after a commit of it yet
            continue
        store = results.store_for(scale)
        for chapter in chapters.GRIDS:
            if chapter.startswith("appendix") or not chapters.has_params(chapter, scale):
                continue
            for c in chapters.configs(chapter, chapters.load_params(chapter, scale)):
                if c.key not in calibration and (store.root / f"{c.key}.json").exists():  # calibration excepted
                    commit = store.load(c.key).provenance["commit"].removesuffix("+dirty")
                    ok = subprocess.run(["git", "merge-base", "--is-ancestor", first[0], commit], cwd=root())
                    assert ok.returncode == 0, f"{scale}/{chapter}: record {c.key} made at {commit[:10]}, before " \
                                               "the registration"
