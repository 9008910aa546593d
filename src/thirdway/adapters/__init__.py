"""Adapters between thirdway and other agent frameworks and their recorded data (AgentDojo)."""
