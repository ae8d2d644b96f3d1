"""The Celery application, under the name Celery's command line is given:
``celery -A jobengine.celery_app worker`` (``jobengine worker`` runs the same). It lives in
:mod:`jobengine.engine.app`."""

from jobengine.engine.app import app, configure

__all__ = ["app", "configure"]
