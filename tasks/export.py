"""ExportJob tasks: ``jobengine.export.start``, ``.item`` (one asset) and ``.finish`` (the ZIP)."""

from jobengine.celery_app import app
from jobengine.taskkit import define_tasks

start, item, finish = define_tasks(app, "export")
