"""ReprocessAssetsJob tasks: ``jobengine.reprocess_assets.start|item|finish``."""

from jobengine.celery_app import app
from jobengine.taskkit import define_tasks

start, item, finish = define_tasks(app, "reprocess_assets")
