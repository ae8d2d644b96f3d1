"""ImageRenderingPublishJob tasks: ``jobengine.image_rendering_publish.start|item|finish``."""

from jobengine.engine.app import app
from jobengine.engine.taskkit import define_tasks

start, item, finish = define_tasks(app, "image_rendering_publish")
