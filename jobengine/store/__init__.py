"""The durable job store: tables, engines, run-once guards, runs and handles."""
