"""AutomatedSetGenerationJob tasks: ``jobengine.automated_set_generation.start|item|finish``."""

from jobengine.engine.app import app
from jobengine.engine.taskkit import define_tasks

start, item, finish = define_tasks(app, "automated_set_generation")
