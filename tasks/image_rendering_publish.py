"""ImageRenderingPublishJob tasks: ``jobengine.image_rendering_publish.start|item|finish``."""

from jobengine.celery_app import app
from jobengine.taskkit import define_tasks

start, item, finish = define_tasks(app, "image_rendering_publish")
