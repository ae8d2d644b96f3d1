"""UploadUrlsJob tasks: ``jobengine.upload_urls.start|item|finish``."""

from jobengine.celery_app import app
from jobengine.taskkit import define_tasks

start, item, finish = define_tasks(app, "upload_urls")
