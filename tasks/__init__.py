"""Celery task modules, one per job kind. Each is a few lines: the work lives in jobengine."""
