"""The paper's claims: the measures on hand-worked runs, and verdicts from synthetic run folders."""
import json

import pytest

from shrinknet.paper import claims
from shrinknet.paper.claims import CLAIMS, VERDICTS, View
from shrinknet.results import PruneResult


def _result(errors, accs=None, layers=None, K=10, crit="brute-force", sched="iterative", test=None):
    n = len(errors) - 1
    return PruneResult(criterion=crit, schedule=sched, loss="sse", hidden_sizes=[K], initial_error=errors[0],
                       initial_accuracy=None if accs is None else accs[0],
                       removed=[(0 if layers is None else layers[i], i) for i in range(n)], errors=list(errors[1:]),
                       predicted=[0.0] * n, accuracies=None if accs is None else list(accs[1:]),
                       initial_test_error=None if test is None else test[0],
                       test_errors=None if test is None else list(test[1:]), initially_active=K,
                       initial_test_accuracy=None if test is None or accs is None else accs[0],
                       test_accuracies=None if test is None or accs is None else list(accs[1:]))


def test_the_measures_on_a_hand_worked_run():
    # 10 neurons; accuracy 0.99 for 3 removals, 0.97 at the 4th, 0.90 at the 6th, then down
    acc = [0.99, 0.99, 0.99, 0.99, 0.97, 0.96, 0.90, 0.5, 0.3, 0.2, 0.1]
    err = [10, 9, 9.5, 10, 12, 25, 40, 100, 150, 180, 210]
    v = View.of(_result(err, acc), test=False)
    assert v.knee(0.01) == 30.0          # the 4th removal falls 2 points: 3 of 10 before it
    assert v.knee(0.05) == 50.0          # the 6th falls 9 points
    assert v.below_start() == 30.0       # 12 > 10 at the 4th
    assert v.visually_flat() == 40.0     # the rise is 200, 5 % of it 10: 25 - 10 > 10 at the 5th
    assert v.acc(50) == 0.96 and v.k(55) == 6 and v.k(45) == 5 and v.k(25) == 3       # halves round up
    assert v.mean_acc(0, 30) == pytest.approx(0.99)


def test_rules_that_cannot_apply_say_why():
    short = View.of(_result([10, 11, 12, 13], [0.9, 0.9, 0.8, 0.7]), test=False)      # 3 of 10 removed
    with pytest.raises(claims.Untestable, match="the run stops at 30 % removed, the rule reads 50 %"):
        short.acc(50)
    regression = View.of(_result([1.0, 2.0, 3.0], K=2), test=False)
    with pytest.raises(claims.Untestable, match="no accuracy"):
        regression.knee(0.05)
    with pytest.raises(claims.Untestable, match="no test set"):
        View.of(_result([1.0, 2.0, 3.0], K=2), test=True)


def _folder(tmp_path, exp, runs: dict, start=(0.99, 0.95), variant_of=None):
    """A reproduce output folder holding ``runs[(criterion, schedule)] = (errors, accuracies)``."""
    (tmp_path / exp).mkdir(parents=True)
    for (crit, sched), (err, acc) in runs.items():
        r = _result(err, acc, K=len(err) - 1, crit=crit, sched=sched, test=err)
        r.save_json(tmp_path / exp / f"{crit}_{sched}.json")
    return {"id": exp, "train_accuracy": start[0], "test_accuracy": start[1], "variant_of": variant_of}


def test_digit_claims_get_their_verdicts_from_the_runs(tmp_path):
    flat = [10.0] * 11
    down_then_up = [10, 8, 7, 7, 7, 7, 8, 9, 10, 15, 30]              # below its start until 80 %
    explode = [10, 25, 30, 30, 40, 50, 60, 70, 80, 90, 100]
    runs = {("brute-force", "iterative"): (down_then_up, None), ("taylor1", "iterative"): (explode, None),
            ("taylor2", "iterative"): (flat, None)}
    s = _folder(tmp_path, "digit-0", runs)
    rows = {r["id"]: r for r in claims.evaluate(tmp_path, [s])}
    assert rows["digit-0-bf-below-start-70pct"]["verdict"] == "reproduced"
    measured = rows["digit-0-bf-below-start-70pct"]["measured"]
    assert "lowest early 0.700 x start; at or below start until 80 %" in measured
    assert rows["digit-0-taylor1-explodes"]["verdict"] == "reproduced"            # 2.5x at once, taylor2 below
    assert rows["digit-1-bf-below-start-80pct"]["verdict"] == "not testable"       # not in this run
    assert rows["digit-start-accuracies"]["verdict"] == "not testable"
    assert rows["digit-0-taylor1-explodes@test"]["verdict"] == "reproduced"       # the test view (same numbers here)
    assert not any(r["regime"] == "variant" for r in rows.values())              # no earlier regime in this run
    # the same claim against a run where nothing happens: not reproduced
    (tmp_path / "b").mkdir()
    s = _folder(tmp_path / "b", "digit-0", {k: (flat, None) for k in runs})
    rows = {r["id"]: r for r in claims.evaluate(tmp_path / "b", [s])}
    assert rows["digit-0-bf-below-start-70pct"]["verdict"] == "not reproduced"
    assert rows["digit-0-taylor1-explodes"]["verdict"] == "not reproduced"


def test_every_claim_has_a_verdict_and_the_variant_is_its_own_view(tmp_path):
    err = [float(e) for e in range(10, 21)]
    acc = [1.0 - 0.05 * i for i in range(11)]
    runs = {(c, s): (err, acc) for c in ("brute-force", "taylor1", "taylor2") for s in ("iterative", "single")}
    sums = [_folder(tmp_path, "mnist-1x100", runs), _folder(tmp_path, "mnist-1x100-crop", runs,
                                                              variant_of="mnist-1x100")]
    rows = claims.evaluate(tmp_path, sums)
    assert len(rows) == 4 * len(CLAIMS) and len({r["id"] for r in rows}) == len(rows)
    assert {r["regime"] for r in rows} == {"paper", "variant"} and {r["set"] for r in rows} == {"training", "test"}
    assert all(r["verdict"] in VERDICTS and set(r) >= {"id", "experiment", "claim", "paper", "measured", "verdict"}
               for r in rows)
    by = {r["id"]: r for r in rows}
    assert by["taylor2-better-estimate@test"]["verdict"] == "not testable"        # what the criteria predict: training
    assert by["cos-2x10-bf-flat-50pct@variant"]["measured"] == "no earlier regime"
    start = by["mnist-1x100-start-accuracy@test"]
    assert start["measured"] == "0.9500" and start["verdict"] == "not reproduced"   # the test start, < 0.99
    assert json.loads(json.dumps(rows)) == rows


def test_a_bar_in_a_claim_does_not_split_its_table_row():
    from shrinknet.paper.report import _claims_table
    row = {"id": "x", "experiment": "all", "claim": "median |a - b| is small", "paper": "p", "rule": "|x| < 1",
           "set": "training", "regime": "paper", "measured": "|d| = 2", "verdict": "reproduced"}
    line = _claims_table([row])[2]
    assert line.replace("\\|", "").count("|") == 7                    # 6 columns


def test_each_seed_gets_its_verdict_and_the_row_the_median_one(tmp_path):
    # three training seeds of digit-0: brute force's error at or below its start until 80 %, 50 % and 30 %
    def bf(until):                                 # lowest 0.7x the start, above it from ``until`` % on
        k = until // 10
        return [10.0] + [7.0] * (k - 1) + [10.0] + [20.0] * (10 - k)
    flat = [10.0] * 11
    s = None
    for i, until in enumerate((80, 50, 30)):
        folder = tmp_path / "digit-0" / ("." if i == 0 else f"seed-{i}")
        folder.mkdir(parents=True, exist_ok=True)
        for crit, err in (("brute-force", bf(until)), ("taylor1", flat), ("taylor2", flat)):
            _result(err, K=10, crit=crit, test=err).save_json(folder / f"{crit}_iterative.json")
    s = {"id": "digit-0", "train_accuracy": None, "test_accuracy": None, "variant_of": None,
         "seeds": [{"seed": i, "folder": "." if i == 0 else f"seed-{i}"} for i in range(3)]}
    rows = {r["id"]: r for r in claims.evaluate(tmp_path, [s])}
    row = rows["digit-0-bf-below-start-70pct"]
    assert [x["verdict"] for x in row["seeds"]] == ["reproduced", "partly", "not reproduced"]
    assert [x["seed"] for x in row["seeds"]] == [0, 1, 2]
    assert "until 80 %" in row["seeds"][0]["measured"] and "until 30 %" in row["seeds"][2]["measured"]
    assert row["verdict"] == "partly"                                  # the median seed's
    assert row["verdict_counts"] == {"reproduced": 1, "partly": 1, "not reproduced": 1}
    assert row["measured"] == row["seeds"][0]["measured"]              # seed 0's, as in the figures


def test_a_claim_about_every_trial_takes_the_worst_seed_and_untestable_seeds_are_left_out():
    class Seed:                                   # what Claim.evaluate reads of one seed's runs
        variant, summaries = False, {}

        def __init__(self, seed, verdict):
            self.seed, self.verdict = seed, verdict

        def has(self, *exps):
            return True

    def check(R, s):
        if R.verdict == "not testable":
            raise claims.Untestable("stopped early")
        return f"seed {R.seed}", R.verdict
    seeds = [Seed(i, v) for i, v in enumerate(["reproduced", "partly", "not testable", "reproduced"])]
    median = claims.Claim("x", "all", (), "c", "p", "r", check).evaluate(seeds, "training")
    every = claims.Claim("y", "all", (), "c", "p", "r", check, aggregate="all").evaluate(seeds, "training")
    assert median["verdict"] == "reproduced"      # the middle of partly, reproduced, reproduced
    assert every["verdict"] == "partly"           # the worst tested seed
    assert median["verdict_counts"] == {"reproduced": 2, "partly": 1, "not testable": 1}
    assert [s["measured"] for s in median["seeds"]] == ["seed 0", "seed 1", "stopped early", "seed 3"]
    two = claims.Claim("z", "all", (), "c", "p", "r", check).evaluate([seeds[0], seeds[3]], "training")
    assert two["verdict"] == "reproduced"
