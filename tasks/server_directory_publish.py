"""ServerDirectoryPublishJob tasks: ``jobengine.server_directory_publish.start|item|finish``."""

from jobengine.engine.taskkit import kind_tasks

start, item, finish = kind_tasks(__name__)
