"""ExportJob tasks: ``jobengine.export.start``, ``.item`` (one asset) and ``.finish`` (the ZIP)."""

from jobengine.engine.taskkit import kind_tasks

start, item, finish = kind_tasks(__name__)
