"""ServerDirectoryPublishJob tasks: ``jobengine.server_directory_publish.start|item|finish``."""

from jobengine.celery_app import app
from jobengine.taskkit import define_tasks

start, item, finish = define_tasks(app, "server_directory_publish")
