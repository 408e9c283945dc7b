"""Choosing a study's mixture law: leave one code fraction out, compare the forms, calibrate.

`fit_study(cells, cfg, optima)` fits every form of fit.mixture per metric on every usable
cell and compares them by leave-one-code-fraction-out prediction of each held-out budget's
IsoFLOP optimum (the optima table). The chosen form is the one `choose` picks by the
held-out rule below, decided by that rule alone. Also compared: the Approach-2 surface
ln N*(C, s) = b + a ln C + c s + d s ln C through the per-budget optima (no loss surface, so
it cannot answer a weighted objective). `calibrate` widens the prediction intervals by the
law's own held-out error, cross-validated per fold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skillscale.analysis import fit, mixlaw
from skillscale.analysis.fit import mixture as mx
from skillscale.analysis.mixlaw import MAX_BOOT, StudyLaws, exact_flops_per_token, fit_laws, fpt_function, law_inputs

__all__ = [
    "SURFACE",
    "N_TOL",
    "loo_predictions",
    "held_out_error",
    "in_sample",
    "widen",
    "calibrate",
    "compare",
    "choose",
    "fit_study",
    "LOO_COLUMNS",
    "loo_table",
    "law_table",
]

SURFACE = "surface"  # the Approach-2 surface baseline's name in the comparison


def _interior(optima: pd.DataFrame) -> pd.DataFrame:
    o = optima[(optima["status"] == "ok")] if "status" in optima.columns else optima.iloc[:0]
    return o[np.isfinite(o["n_opt"].astype(float))]


def _surface_predict(train: pd.DataFrame, held: pd.DataFrame, col: str) -> np.ndarray:
    """ln col = b + a ln C + c s + d s ln C through the training optima, at the held-out rows."""

    def X(df):
        lc = np.log(df["budget"].to_numpy(float)) - lc0
        s = df["s"].to_numpy(float)
        return np.column_stack([np.ones_like(lc), lc, s, s * lc])

    lc0 = float(np.log(train["budget"]).mean()) if len(train) else 0.0
    if len(train) < 4 or train["s"].nunique() < 2 or train["budget"].nunique() < 2:
        return np.full(len(held), np.nan)
    k, *_ = np.linalg.lstsq(X(train), np.log(train[col].to_numpy(float)), rcond=None)
    return np.exp(X(held) @ k)


def _law_prediction(law, budget: float, s: float, ci: float, fpt=None) -> dict:
    o = mx.optimum([("m", law, 1.0, s)], budget, fpt)
    lo, hi = fit.interval(o.log_n_draws, ci, o.log_n)
    pl, dl = o.losses["m"]
    llo, lhi = fit.interval(dl, ci, pl)
    return dict(n=np.exp(o.log_n), n_lo=np.exp(lo), n_hi=np.exp(hi), loss=pl, loss_lo=llo, loss_hi=lhi)


def loo_predictions(
    inputs: pd.DataFrame, optima: pd.DataFrame, forms, n_boot: int, ci: float, fpt=None, mapper=map, init=None
):
    """Leave one code fraction out: fit on the others, predict the held-out fraction's optima.

    One row per candidate x metric x held-out fraction x budget with an interior observed
    optimum; n_boot > 0 adds the prediction's interval (refits on resampled training cells).
    `init`: the laws fitted on all cells, each fold's first start (fit_laws)."""
    obs = _interior(optima).copy()
    share = inputs.drop_duplicates(["metric", "code_frac"]).set_index(["metric", "code_frac"])["s"]
    obs["s"] = [share.get((m, cf), np.nan) for m, cf in zip(obs["metric"], obs["code_frac"])]
    rows = []
    for cf in sorted(inputs["code_frac"].unique()):
        train = inputs[inputs["code_frac"] != cf]
        if train["code_frac"].nunique() < 2:
            continue
        laws = fit_laws(train, n_boot, forms, mapper=mapper, init=init)
        tr_opt, held = obs[obs["code_frac"] != cf], obs[obs["code_frac"] == cf]
        for m, h in held.groupby("metric"):
            base = h[["code_frac", "metric", "budget", "n_opt", "n_opt_lo", "n_opt_hi", "loss_opt"]]
            for form in forms:
                law = laws.get(m, {}).get(form, "no cells")
                for (_, r), b in zip(base.iterrows(), h["budget"]):
                    row = dict(candidate=form, **r.to_dict())
                    if isinstance(law, str):
                        row["status"] = f"failed: {law}"
                    else:
                        p = _law_prediction(law, float(b), float(h["s"].iloc[0]), ci, fpt)
                        row.update({f"pred_{k}": v for k, v in p.items()}, status="ok")
                    rows.append(row)
            trm = tr_opt[tr_opt["metric"] == m]
            pn, pl = _surface_predict(trm, h, "n_opt"), _surface_predict(trm, h, "loss_opt")
            for (_, r), n, lo in zip(base.iterrows(), pn, pl):
                rows.append(dict(candidate=SURFACE, **r.to_dict(), pred_n=n, pred_loss=lo, status="ok"))
    return _scored(pd.DataFrame(rows))


def in_sample(laws: dict, inputs: pd.DataFrame, optima: pd.DataFrame, fpt=None) -> dict:
    """Per form: median |N* error| and |loss* error| of the law fitted on ALL code fractions
    against the observed optima it was fitted through.

    What the form reaches when it has seen the fraction: a floor under its held-out error.
    On the default study the forms meet the optima's loss* within 0.5-1.5% this way (an
    Approach-3 law per fraction: 0.4%) and miss a held-out fraction's by 1.5-3.3%: the gap
    is what the unseen mix costs, which the in-sample error alone would hide."""
    obs = _interior(optima)
    share = inputs.drop_duplicates(["metric", "code_frac"]).set_index(["metric", "code_frac"])["s"]
    err: dict = {}
    for r in obs.itertuples():
        s = share.get((r.metric, r.code_frac), np.nan)
        for form, law in laws.get(r.metric, {}).items():
            if isinstance(law, str) or not np.isfinite(s):
                continue
            o = mx.optimum([("m", law, 1.0, s)], float(r.budget), fpt)
            e = err.setdefault(form, ([], []))
            e[0].append(abs(np.exp(o.log_n) / r.n_opt - 1))
            e[1].append(abs(o.losses["m"][0] / r.loss_opt - 1))
    return {f: dict(n=float(np.median(n)), loss=float(np.median(lo))) for f, (n, lo) in err.items()}


def held_out_error(rows: pd.DataFrame, ci: float) -> tuple[float, float]:
    """The `ci` quantile of |ln(predicted / observed)| of N* and of loss* over held-out rows
    (NaN with fewer than 5)."""
    ok = rows[np.isfinite(rows["pred_n"].astype(float)) & np.isfinite(rows["n_opt"].astype(float))]
    if len(ok) < 5:
        return np.nan, np.nan
    en = np.abs(np.log(ok["pred_n"].astype(float) / ok["n_opt"].astype(float)))
    el = np.abs(np.log(ok["pred_loss"].astype(float) / ok["loss_opt"].astype(float)))
    return float(np.quantile(en, ci)), float(np.nanquantile(el, ci))


def widen(v, lo, hi, q):
    """An interval [lo, hi] around v stretched to at least v exp(-q) .. v exp(q)."""
    if not np.isfinite(q):
        return lo, hi
    return np.fmin(lo, v * np.exp(-q)), np.fmax(hi, v * np.exp(q))


def calibrate(loo: pd.DataFrame, chosen: str, ci: float) -> pd.DataFrame:
    """Prediction intervals for each held-out fraction: the bootstrap interval (the cells'
    noise) widened by the law's own held-out error, measured on the OTHER folds only.

    A bootstrap over cells says how well the cells pin the law down, not how wrong the form
    is at a mix it never saw; the other folds' errors measure that, and never the fold
    being judged (cross-validated, so the coverage reported is not fitted to itself)."""
    if loo.empty:
        return loo
    df = loo.copy()
    rows = df["candidate"] == chosen
    df["pred_n_boot_lo"], df["pred_n_boot_hi"] = df.get("pred_n_lo", np.nan), df.get("pred_n_hi", np.nan)
    # per metric: the metrics' errors differ in scale (a knowledge QA loss moves 2x with the mix)
    for cf, m in df.loc[rows, ["code_frac", "metric"]].drop_duplicates().itertuples(index=False):
        here = rows & (df["code_frac"] == cf) & (df["metric"] == m)
        qn, ql = held_out_error(df[rows & (df["code_frac"] != cf) & (df["metric"] == m)], ci)
        df.loc[here, "pred_n_lo"], df.loc[here, "pred_n_hi"] = widen(
            df.loc[here, "pred_n"], df.loc[here, "pred_n_lo"], df.loc[here, "pred_n_hi"], qn
        )
        df.loc[here, "pred_loss_lo"], df.loc[here, "pred_loss_hi"] = widen(
            df.loc[here, "pred_loss"], df.loc[here, "pred_loss_lo"], df.loc[here, "pred_loss_hi"], ql
        )
    return _scored(df)


def _scored(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    for c in ("pred_n", "pred_n_lo", "pred_n_hi", "pred_loss"):
        if c not in df.columns:
            df[c] = np.nan
    df["n_rel_err"] = df["pred_n"] / df["n_opt"] - 1
    df["loss_rel_err"] = df["pred_loss"] / df["loss_opt"] - 1
    has = np.isfinite(df["pred_n_lo"]) & np.isfinite(df["pred_n_hi"])
    df["covered"] = np.where(has, (df["n_opt"] >= df["pred_n_lo"]) & (df["n_opt"] <= df["pred_n_hi"]), np.nan).astype(
        object
    )
    return df


def compare(loo: pd.DataFrame) -> list[dict]:
    """Per candidate: median |N* error|, median |loss* error|, coverage of the observed N*;
    and the two errors split by whether the held-out fraction lies between the fractions the
    fold was fitted on (interpolated) or beyond them (extrapolated): the law is asked both."""
    cf = loo["code_frac"].to_numpy(float)
    loo = loo.assign(_inside=(cf > np.nanmin(cf, initial=np.inf)) & (cf < np.nanmax(cf, initial=-np.inf)))
    out = []
    for cand, g in loo.groupby("candidate", sort=False):
        ok = g[np.isfinite(g["n_rel_err"].astype(float))]
        cov = ok["covered"].dropna().astype(bool)
        boot = ok.get("pred_n_boot_lo")
        boot_cov = np.nan
        if boot is not None and np.isfinite(boot.astype(float)).any():
            has = np.isfinite(ok["pred_n_boot_lo"].astype(float))
            inside = (ok["n_opt"] >= ok["pred_n_boot_lo"]) & (ok["n_opt"] <= ok["pred_n_boot_hi"])
            boot_cov = float(inside[has].mean())
        out.append(
            dict(
                candidate=cand,
                n_groups=len(ok),
                median_abs_n_err=float(np.median(np.abs(ok["n_rel_err"]))) if len(ok) else np.nan,
                max_abs_n_err=float(np.max(np.abs(ok["n_rel_err"]))) if len(ok) else np.nan,
                median_abs_loss_err=float(np.median(np.abs(ok["loss_rel_err"]))) if len(ok) else np.nan,
                coverage=float(cov.mean()) if len(cov) else np.nan,
                coverage_bootstrap_only=boot_cov,
                n_covered=int(cov.sum()),
                n_with_interval=len(cov),
                **{
                    f"median_abs_{k}_err_{where}": float(np.median(np.abs(part[f"{k}_rel_err"])))
                    if len(part)
                    else np.nan
                    for where, part in (("interp", ok[ok["_inside"]]), ("extrap", ok[~ok["_inside"]]))
                    for k in ("n", "loss")
                },
            )
        )
    return out


# The held-out rule follows the order of issue 25's targets: a form must first predict where
# the optimum is (median |N* error| within N_TOL), then how good it is. Among the forms
# within N_TOL the lowest median |loss* error| wins; if none is within, the lowest N* error.
N_TOL = 0.15


def choose(comparison: list[dict], forms) -> str:
    """The loss-surface form the held-out rule picks (ties: the simpler, earlier in FORMS)."""
    sc = {c["candidate"]: c for c in comparison if c["candidate"] in forms}
    ok = [f for f in forms if f in sc and np.isfinite(sc[f]["median_abs_n_err"])]
    if not ok:
        return mixlaw.DEFAULT_FORM if mixlaw.DEFAULT_FORM in forms else forms[0]
    within = [f for f in ok if sc[f]["median_abs_n_err"] <= N_TOL]
    if within:
        return min(within, key=lambda f: (sc[f]["median_abs_loss_err"], forms.index(f)))
    return min(ok, key=lambda f: (sc[f]["median_abs_n_err"], forms.index(f)))


def fit_study(cells: pd.DataFrame, cfg: dict, optima: pd.DataFrame) -> tuple[StudyLaws, pd.DataFrame]:
    """Fit every form on all usable cells, compare them by leave-one-code-fraction-out, choose.

    Returns the laws and the leave-one-out rows (the chosen form's with intervals)."""
    fc = cfg["fit"]
    n_boot, ci = min(int(fc["n_boot"]), MAX_BOOT), float(fc["ci"])
    sources = cfg["data"].get("sources")
    inputs = law_inputs(cells, sources)
    flops = cfg.get("grid", {}).get("flops", "6nd")
    fpt = fpt_function(exact_flops_per_token(cells)) if flops == "exact" else None
    with mixlaw.process_map() as mapper:
        # Every form on all cells first: their fits start each fold's fit. Point predictions
        # then choose the form; only the chosen one is refitted with a bootstrap, on all cells
        # and per fold (the intervals the held-out test reports).
        # fewer than 3 code fractions leave nothing to hold out: only the default form is fitted
        forms = mx.FORMS if inputs["code_frac"].nunique() >= 3 else (mixlaw.DEFAULT_FORM,)
        full = fit_laws(inputs, 0, forms, mapper=mapper)
        loo_pts = loo_predictions(inputs, optima, forms, 0, ci, fpt, mapper, full)
        comparison = compare(loo_pts) if not loo_pts.empty else []
        chosen = choose(comparison, forms)
        fitted_all = in_sample(full, inputs, optima, fpt)
        boot = fit_laws(inputs, n_boot, (chosen,), mapper=mapper, init=full)
        # with no held-out comparison the other forms would be numbers nothing ranks: not shown
        laws = {m: {f: v for f, v in fs.items() if comparison or f == chosen} for m, fs in full.items()}
        for m, fs in boot.items():
            laws.setdefault(m, {}).update(fs)
        loo = loo_pts
        if not loo_pts.empty:
            # without a bootstrap the point predictions are all there is to calibrate
            raw = loo_predictions(inputs, optima, (chosen,), n_boot, ci, fpt, mapper, full) if n_boot else loo_pts
            loo_ci = calibrate(raw, chosen, ci)
            loo = pd.concat([loo_ci[loo_ci["candidate"] == chosen], loo_pts[loo_pts["candidate"] != chosen]])
            comparison = compare(loo)
    for c in comparison:  # reported beside the held-out score, never used to choose
        c.update({f"in_sample_abs_{k}_err": v for k, v in fitted_all.get(c["candidate"], {}).items()})
    ranges = dict(
        budgets=sorted(float(b) for b in inputs["budget"].unique()),
        code_fracs=sorted(float(c) for c in inputs["code_frac"].unique()),
        n_params=[float(inputs["n_params"].min()), float(inputs["n_params"].max())],
        tokens=[float(inputs["tokens"].min()), float(inputs["tokens"].max())],
    )
    sk = inputs.drop_duplicates("metric").set_index("metric")["skill"].to_dict()
    sl = StudyLaws(laws, sk, sources, chosen, ranges, exact_flops_per_token(cells), ci, comparison, flops)
    if not loo.empty:
        mine = loo[loo["candidate"] == chosen]
        sl.held_out = {m: dict(zip(("n", "loss"), held_out_error(g, ci))) for m, g in mine.groupby("metric")}
    return sl, loo.reset_index(drop=True)


LOO_COLUMNS = [
    "candidate",
    "metric",
    "code_frac",
    "budget",
    "n_opt",
    "n_opt_lo",
    "n_opt_hi",
    "pred_n",
    "pred_n_lo",
    "pred_n_hi",
    "pred_n_boot_lo",
    "pred_n_boot_hi",
    "n_rel_err",
    "covered",
    "loss_opt",
    "pred_loss",
    "pred_loss_lo",
    "pred_loss_hi",
    "loss_rel_err",
    "status",
]


def loo_table(loo: pd.DataFrame, chosen: str) -> pd.DataFrame:
    """The leave-one-out rows, the chosen form first."""
    if loo.empty:
        why = "failed: leaving a code fraction out needs >= 3 code fractions with interior optima"
        return pd.DataFrame([{"candidate": chosen, "status": why}], columns=LOO_COLUMNS)
    for c in LOO_COLUMNS:
        if c not in loo.columns:
            loo[c] = np.nan
    order = loo["candidate"].map(lambda c: (c != chosen, c))
    return loo.assign(_o=order).sort_values(["_o", "metric", "code_frac", "budget"])[LOO_COLUMNS].reset_index(drop=True)


def law_table(sl: StudyLaws) -> pd.DataFrame:
    """Per metric x form: parameters with intervals, fit quality, LOO score, chosen or not."""
    score = {c["candidate"]: c for c in sl.comparison}
    rows = []
    for m, forms in sl.laws.items():
        for form, law in forms.items():
            sc = score.get(form, {})
            row = dict(metric=m, skill=sl.skills[m], form=form, chosen=form == sl.chosen)
            if isinstance(law, str):
                rows.append(dict(row, status=f"failed: {law}"))
                continue
            ivs = law.intervals(sl.ci)
            for k, v in zip(mx.LAW_PARAMS, law.params):
                row[k], (row[f"{k}_lo"], row[f"{k}_hi"]) = v, ivs[k]
            row.update(
                rms_log=law.rms,
                n_points=law.n_points,
                converged=law.converged,
                boot_converged=law.boot_converged,
                loo_median_abs_n_err=sc.get("median_abs_n_err", np.nan),
                loo_median_abs_loss_err=sc.get("median_abs_loss_err", np.nan),
                loo_coverage=sc.get("coverage", np.nan),
                loo_coverage_bootstrap_only=sc.get("coverage_bootstrap_only", np.nan),
                **{
                    f"loo_median_abs_{k}_err_{w}": sc.get(f"median_abs_{k}_err_{w}", np.nan)
                    for w in ("interp", "extrap")
                    for k in ("n", "loss")
                },
                in_sample_abs_n_err=sc.get("in_sample_abs_n_err", np.nan),
                in_sample_abs_loss_err=sc.get("in_sample_abs_loss_err", np.nan),
                status=mixlaw.law_status(law),
            )
            rows.append(row)
    for c in sl.comparison:
        if c["candidate"] == SURFACE:
            rows.append(
                dict(
                    metric="(all)",
                    skill="",
                    form=SURFACE,
                    chosen=False,
                    loo_median_abs_n_err=c["median_abs_n_err"],
                    loo_median_abs_loss_err=c["median_abs_loss_err"],
                    status="ok",
                )
            )
    return pd.DataFrame(rows)
