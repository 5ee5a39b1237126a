"""The Dagster layer: assets, resources, sensors, schedules, checks and alerts."""
