"""The run-time glue every flow shares: the task runners per-partition work runs on
(`task_runners`), stopping on SIGINT/SIGTERM (`shutdown`), the run directory tasks report through
(`run_dir`), per-partition progress (`progress`), the retry policy (`retry`) and the one-line log
of an expected error (`log_format`)."""
