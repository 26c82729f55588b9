"""Built-in forecast pipeline: the forecast engine, alert rules and a demo data set.

Kept separate from the job machinery so the pipeline can be swapped by the
`FORECAST_PIPELINE` setting and benchmarked on its own. The engine's stable API is
`app.forecast.predict(history, horizon, *, quantiles) -> Prediction` (app/forecast/engine/).
"""

from app.forecast.engine import DEFAULT_QUANTILES, InvalidHistory, Prediction, predict

__all__ = ["DEFAULT_QUANTILES", "InvalidHistory", "Prediction", "predict"]
