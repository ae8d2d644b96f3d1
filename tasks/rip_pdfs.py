"""RipPdfsJob tasks: ``jobengine.rip_pdfs.start|item|finish``."""

from jobengine.engine.app import app
from jobengine.engine.taskkit import define_tasks

start, item, finish = define_tasks(app, "rip_pdfs")
