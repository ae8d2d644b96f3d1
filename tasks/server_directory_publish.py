"""ServerDirectoryPublishJob tasks: ``jobengine.server_directory_publish.start|item|finish``."""

from jobengine.engine.app import app
from jobengine.engine.taskkit import define_tasks

start, item, finish = define_tasks(app, "server_directory_publish")
