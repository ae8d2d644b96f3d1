"""OptimizeImagesJob tasks: ``jobengine.optimize_images.start|item|finish``."""

from jobengine.engine.app import app
from jobengine.engine.taskkit import define_tasks

start, item, finish = define_tasks(app, "optimize_images")
