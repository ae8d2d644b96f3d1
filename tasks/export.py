"""ExportJob tasks: ``jobengine.export.start``, ``.item`` (one asset) and ``.finish`` (the ZIP)."""

from jobengine.engine.app import app
from jobengine.engine.taskkit import define_tasks

start, item, finish = define_tasks(app, "export")
