"""Task heads, trainer, metrics and the elmo-tasks command line."""
