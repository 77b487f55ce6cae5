"""Running it: the context every job works with, the daemon and its scheduled jobs, evaluation
(the pipeline with nothing sent), privacy and retention."""
