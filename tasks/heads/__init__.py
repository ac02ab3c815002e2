"""Pluggable task heads over a task-specific ScalarMix of the frozen ELMo layers."""
