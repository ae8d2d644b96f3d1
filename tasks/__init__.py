"""Celery task modules, one per job kind, named by its slug (``tasks/export.py`` for
``jobengine.export.*``). Each is the same three lines, with nothing of its kind spelled out:
``kind_tasks(__name__)`` finds the kind by the module's name in ``jobengine.kinds.KINDS``, and
``config/celery.py`` lists the modules from that table. The work lives in jobengine."""
