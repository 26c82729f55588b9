"""Real-data benchmark of the forecast engine against seasonal naive, statsmodels and AutoETS.

Why: the engine's accuracy claims must hold on real demand, measured the way the issue states
them (rolling origins, horizon 14, MASE scaled by the in-sample seasonal naive error), next to the
references a reviewer would reach for. Runs on every `*.csv` / `*.csv.gz` of the real-demand
folder (default `../shared/data/real-demand/` beside the repository; says so when it is absent)
and of any `--extra` folders. For each data set it prints a table of method x (MASE, MASE relative
to seasonal naive, sMAPE, P10-P90 coverage, seconds per series, capacity recall/precision/Brier),
then the engine's robustness to missing days and to one outlier, and its spike-alert rate; at the
end the geometric mean of relative error over the data sets.

The slow baselines (statsmodels Holt-Winters, statsforecast AutoETS) run on a random sample of
`--sample` series of each data set (all series when there are fewer); every method of the table
is scored on that same sample, and the engine is scored on all series too.

    .venv/bin/python bench/forecast_real.py [--quick] [--origins 6] [--sample 300] [--extra DIR]
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.forecast import predict  # noqa: E402
from app.forecast.backtest import (  # noqa: E402
    BacktestResult,
    Dataset,
    backtest_dataset,
    engine_forecaster,
    format_table,
    read_long_csv,
    seasonal_naive,
)
from app.forecast.engine import spike_threshold  # noqa: E402

SPIKE_LEVEL = 0.999


def _fill(y: np.ndarray) -> np.ndarray | None:
    """A gap-free copy for the reference models: leading NaN cut, inner NaN interpolated."""
    obs = np.flatnonzero(~np.isnan(y))
    if obs.size < 2:
        return None
    y = y[obs[0] :]
    idx = np.arange(y.size)
    ok = ~np.isnan(y)
    return np.interp(idx, idx[ok], y[ok])


def statsmodels_hw(history: np.ndarray, horizon: int) -> tuple[np.ndarray, None]:
    """statsmodels ExponentialSmoothing: additive damped trend, additive weekly season."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    snaive, _ = seasonal_naive(history, horizon)
    out = snaive.copy()
    for i, row in enumerate(history):
        y = _fill(row)
        if y is None or y.size < 3 * 7:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = ExponentialSmoothing(
                    y,
                    trend="add",
                    damped_trend=True,
                    seasonal="add",
                    seasonal_periods=7,
                    initialization_method="estimated",
                ).fit()
                fc = fit.forecast(horizon)
            if np.isfinite(fc).all():
                out[i] = np.maximum(fc, 0)
        except Exception:  # noqa: BLE001 - a failed reference fit falls back to seasonal naive
            pass
    return out, None


def autoets(history: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """statsforecast AutoETS (season 7) with its 80% interval as P10/P90."""
    from statsforecast.models import AutoETS

    snaive, _ = seasonal_naive(history, horizon)
    mean = snaive.copy()
    q = np.stack([snaive * 0.0, snaive * 2.0])
    for i, row in enumerate(history):
        y = _fill(row)
        if y is None or y.size < 2 * 7 + 2:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = AutoETS(season_length=7).forecast(y=y.astype(np.float64), h=horizon, level=[80])
            m = np.asarray(res["mean"])
            if np.isfinite(m).all():
                mean[i] = np.maximum(m, 0)
                q[0, i] = np.maximum(np.asarray(res["lo-80"]), 0)
                q[1, i] = np.maximum(np.asarray(res["hi-80"]), 0)
        except Exception:  # noqa: BLE001
            pass
    return mean, q


def robustness(values: np.ndarray, horizon: int) -> dict[str, float]:
    """Median |change| of the 14-day forecast total with the last 2 / 7 days missing, and the
    median and 90th percentile ratio with the last day set to 20x the recent median."""
    base = predict(values, horizon).mean.sum(axis=1)
    keep = base > 0
    out: dict[str, float] = {}
    for gap in (2, 7):
        v = values.copy()
        v[:, -gap:] = np.nan
        tot = predict(v, horizon).mean.sum(axis=1)
        out[f"missing_{gap}"] = float(np.median(np.abs(tot[keep] / base[keep] - 1))) if keep.any() else float("nan")
    v = values.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        med = np.nanmedian(values[:, -28:], axis=1)
    ok = keep & np.isfinite(med) & (med > 0)
    v[:, -1] = np.where(ok, 20 * np.nan_to_num(med), v[:, -1])
    tot = predict(v, horizon).mean.sum(axis=1)
    ratio = tot[ok] / base[ok]
    out["outlier_median"] = float(np.median(ratio)) if ok.any() else float("nan")
    out["outlier_p90"] = float(np.quantile(ratio, 0.9)) if ok.any() else float("nan")
    out["outlier_series"] = int(ok.sum())
    return out


def spike_rate(values: np.ndarray, runs: int) -> dict[str, float]:
    """Spike alerts per series per run at SPIKE_LEVEL over the last `runs` days (each day judged
    against the threshold from the days before it), and the share of series alerted at least once."""
    n, days = values.shape
    hits = np.zeros(n)
    judged = 0
    for t in range(max(14, days - runs), days):
        thr = spike_threshold(values[:, :t], SPIKE_LEVEL)
        x = values[:, t]
        hits += np.where(np.isfinite(x) & np.isfinite(thr), x > thr, False)
        judged += 1
    return {
        "alerts_per_series_run": float(hits.sum() / max(1, n * judged)),
        "series_alerted": float((hits > 0).mean()) if n else 0.0,
        "runs": judged,
    }


def subset(ds: Dataset, rows: np.ndarray) -> Dataset:
    return Dataset(ds.name, [ds.series[i] for i in rows], [ds.lines[i] for i in rows], ds.start, ds.values[rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "real-demand"))
    ap.add_argument("--extra", action="append", default=[], help="more folders of long CSV files")
    ap.add_argument("--origins", type=int, default=6)
    ap.add_argument("--horizon", type=int, default=14)
    ap.add_argument("--sample", type=int, default=300, help="series per data set for the slow baselines")
    ap.add_argument("--quick", action="store_true", help="2 origins, 60-series sample, no statsmodels")
    ap.add_argument("--only", action="append", default=None, help="data set names to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--max-days",
        type=int,
        default=1100,
        help="keep only the last this-many days of each data set (the slow baselines' fit time)",
    )
    args = ap.parse_args()
    if args.quick:
        args.origins, args.sample = min(args.origins, 2), min(args.sample, 60)
    files: list[str] = []
    if os.path.isdir(args.data):
        files += sorted(glob.glob(os.path.join(args.data, "*.csv*")))
    else:
        print(f"real-demand data folder {args.data} is absent: only --extra folders are benchmarked")
    for extra in args.extra:
        files += sorted(glob.glob(os.path.join(extra, "*.csv*")))
    if not files:
        print("no data files: nothing to benchmark")
        return
    print(
        f"forecast_real: horizon {args.horizon}, {args.origins} origins one week apart, "
        f"slow baselines on <= {args.sample} sampled series per data set, cpu count {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    methods: dict[str, Any] = {"engine": engine_forecaster, "seasonal_naive": seasonal_naive}
    if not args.quick:
        methods["statsmodels_hw"] = statsmodels_hw
    methods["autoets"] = autoets
    rel: dict[str, list[float]] = {}
    cap_all: dict[str, list[float]] = {}  # method -> [overloads, warned, warned hits, Brier sum, line origins]
    rng = np.random.default_rng(args.seed)
    for path in files:
        for ds in read_long_csv(path):
            if args.only and ds.name not in args.only:
                continue
            if ds.values.shape[1] > args.max_days:
                ds = Dataset(ds.name, ds.series, ds.lines, ds.start, ds.values[:, -args.max_days :])
            n, days = ds.values.shape
            rows = np.sort(rng.choice(n, size=min(n, args.sample), replace=False))
            sample = subset(ds, rows)
            t0 = time.perf_counter()
            scores, info = backtest_dataset(sample, args.horizon, args.origins, methods)
            if n > len(rows):
                all_scores, all_info = backtest_dataset(
                    ds, args.horizon, args.origins, {"engine": engine_forecaster, "seasonal_naive": seasonal_naive}
                )
                scores["engine (all series)"] = all_scores["engine"]
                scores["snaive (all)"] = all_scores["seasonal_naive"]
                info["note"] = f"table on {len(rows)} sampled series; '(all)' rows on all {n}"
            base = scores["seasonal_naive"]["mase"]
            for _meth, s in scores.items():
                s["rel_mase"] = s["mase"] / base if s.get("mase") is not None and base else None
            result = BacktestResult(args.horizon, args.origins, {ds.name: scores}, {ds.name: info})
            print(format_table(result))
            if info.get("note"):
                print(f"  ({info['note']})")
            for meth, s in scores.items():
                if s.get("line_origins") and "(all" not in meth:
                    acc = cap_all.setdefault(meth, [0.0] * 5)
                    for k, v in enumerate(
                        (
                            s["overloads"],
                            s.get("warned", 0),
                            s.get("warned_hits", 0),
                            (s.get("brier") or 0.0) * s["line_origins"],
                            s["line_origins"],
                        )
                    ):
                        acc[k] += v
            base_all = scores.get("snaive (all)", scores["seasonal_naive"])["mase"]
            for meth, s in scores.items():
                if meth in ("seasonal_naive", "snaive (all)"):
                    continue
                denom = base_all if meth == "engine (all series)" else base
                if s.get("mase") and denom:
                    rel.setdefault(meth, []).append(s["mase"] / denom)
            cut = days  # robustness at the newest origin: the full history
            rob = robustness(ds.values[:, -730:] if days > 730 else ds.values, args.horizon)
            print(
                f"  robustness (engine, all series): last 2 days missing -> total moves "
                f"{100 * rob['missing_2']:.1f}% (target <= 5%), last 7 days missing -> "
                f"{100 * rob['missing_7']:.1f}% (target <= 10%); one 20x day on the last day -> x"
                f"{rob['outlier_median']:.3f} median, x{rob['outlier_p90']:.3f} P90 "
                f"(target <= 1.5; {rob['outlier_series']} series)"
            )
            sp = spike_rate(ds.values[:, :cut], 28 if not args.quick else 7)
            print(
                f"  spike threshold (P{100 * SPIKE_LEVEL:g}): {sp['alerts_per_series_run']:.4f} alerts per series "
                f"per run, {100 * sp['series_alerted']:.1f}% of series alerted at least once in "
                f"{sp['runs']} runs"
            )
            print(f"  ({time.perf_counter() - t0:.1f} s)")
    print("\ngeometric mean of MASE relative to seasonal naive over data sets:")
    for meth, vals in rel.items():
        g = math.exp(sum(math.log(v) for v in vals) / len(vals))
        print(f"  {meth:<20} {g:.3f}  ({len(vals)} data sets)")
    print(
        "\ncapacity warnings over all lines and origins of all data sets (high severity; target: recall >= 0.8 "
        "at precision >= 0.8):"
    )
    for meth, (events, warned, hits, brier_sum, judged) in cap_all.items():
        recall = f"{hits / events:.2f}" if events else "-"
        precision = f"{hits / warned:.2f}" if warned else "-"
        print(
            f"  {meth:<20} recall {recall} ({int(hits)}/{int(events)} overloads), precision {precision} "
            f"({int(warned)} warnings), Brier {brier_sum / judged:.3f} ({int(judged)} line origins)"
        )


if __name__ == "__main__":
    main()
