"""AutomatedSetGenerationJob tasks: ``jobengine.automated_set_generation.start|item|finish``."""

from jobengine.celery_app import app
from jobengine.taskkit import define_tasks

start, item, finish = define_tasks(app, "automated_set_generation")
