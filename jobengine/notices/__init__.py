"""Effects after a run for people and systems: completion e-mail and completion callbacks."""
