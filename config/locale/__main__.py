"""``python -m config.locale``: regenerate the ``.mo`` files from the ``.po`` files."""

from config.locale import main

raise SystemExit(main())
