"""UploadDirectoryJob tasks: ``jobengine.upload_directory.start|item|finish``."""

from jobengine.engine.app import app
from jobengine.engine.taskkit import define_tasks

start, item, finish = define_tasks(app, "upload_directory")
