"""OptimizeImagesJob tasks: ``jobengine.optimize_images.start|item|finish``."""

from jobengine.celery_app import app
from jobengine.taskkit import define_tasks

start, item, finish = define_tasks(app, "optimize_images")
