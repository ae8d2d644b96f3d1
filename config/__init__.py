"""Files shipped with jobengine (installed as the data package ``jobengine.config``): the
ImageMagick policy (``policy.xml``), the default presets (``presets.json``) and the gettext
catalogs (``locale/``). No code: see :mod:`jobengine.shipped`."""
