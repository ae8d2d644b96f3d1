"""The command line: ``jobengine`` (``jobengine.cli:main``) and its sub-commands.

:mod:`.app` holds the commands; :mod:`.db` and :mod:`.admin` add the store and account commands;
:mod:`.devrun`, :mod:`.devstack` and :mod:`.demo` run the embedded stack for ``make run``.
"""

from jobengine.cli.app import app, main

__all__ = ["app", "main"]
