"""Built-in forecast pipeline: a vectorised Holt-Winters model, alert rules and a demo data set.

Kept separate from the job machinery so the pipeline can be swapped by the
`FORECAST_PIPELINE` setting and benchmarked on its own.
"""
