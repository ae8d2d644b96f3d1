"""RipPdfsJob tasks: ``jobengine.rip_pdfs.start|item|finish``."""

from jobengine.celery_app import app
from jobengine.taskkit import define_tasks

start, item, finish = define_tasks(app, "rip_pdfs")
