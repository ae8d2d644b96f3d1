"""The engine: submission, dispatch to Celery, the runner of a run's steps, the scheduler (beat),
leases and the janitor."""
