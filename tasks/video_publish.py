"""VideoPublishJob tasks: ``jobengine.video_publish.start|item|finish``."""

from jobengine.celery_app import app
from jobengine.taskkit import define_tasks

start, item, finish = define_tasks(app, "video_publish")
