"""``python -m jobengine.cli``: the ``jobengine`` command."""

from jobengine.cli.app import main

main()
