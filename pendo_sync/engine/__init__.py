"""The sync engine: change sets, batching, delivery and outcome. Knows nothing of Dagster."""
