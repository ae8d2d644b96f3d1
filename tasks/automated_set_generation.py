"""AutomatedSetGenerationJob tasks: ``jobengine.automated_set_generation.start|item|finish``."""

from jobengine.engine.taskkit import kind_tasks

start, item, finish = kind_tasks(__name__)
