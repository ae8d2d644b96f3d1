"""Project configuration: Celery settings, the ImageMagick policy, default presets."""
