"""The shipped YAML configs (package data, so the layer grid and `elmo-tasks` find them installed)."""
