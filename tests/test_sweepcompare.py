import json

import pandas as pd

from skillscale.studies import sweepcompare


def fake_study(root, optima, spent):
    (root / "tables").mkdir(parents=True)
    pd.DataFrame(optima).to_csv(root / "tables" / "optima.csv", index=False)
    for job, flops in spent.items():
        d = root / job
        d.mkdir(parents=True)
        name = {"trunks": "trunk.json", "stable": "stable.json"}.get(job.split("/")[0], "train.json")
        (d / name).write_text(json.dumps({"flops_spent": flops}))


def test_compute_and_agreement_over_the_shared_code_fractions(tmp_path):
    row = dict(metric="code_text", budget=1e12, status="ok")
    fake_study(
        tmp_path / "wsd",
        [
            dict(row, code_frac=0.5, n_opt=5e4, n_opt_lo=4e4, n_opt_hi=6e4),
            dict(row, code_frac=0.8, n_opt=3e4, n_opt_lo=2e4, n_opt_hi=4e4),
        ],
        {
            "trunks/code0.50_d32L2h4_seed0": 3.0,
            "stable/code0.50_d16L2h4_seed0": 1.0,
            "cells/code0.50_C1.0e12_d32L2h4_seed0": 1.0,
            "cells/code0.80_C1.0e12_d32L2h4_seed0": 100.0,
        },
    )
    fake_study(
        tmp_path / "cos",
        [dict(row, code_frac=0.5, n_opt=6e4, n_opt_lo=5.5e4, n_opt_hi=9e4)],
        {"cells/code0.50_C1.0e12_d32L2h4_seed0": 10.0},
    )
    m, s = sweepcompare.compare(tmp_path / "wsd", tmp_path / "cos")
    assert s["code_fracs"] == [0.5] and s["compute_ratio"] == 0.5  # code 0.8 is in one sweep only
    assert len(m) == 1 and not m.inside_b_ci.iloc[0] and s["both_interior"] == 1 and s["inside_ci"] == 0
