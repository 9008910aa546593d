"""Tool manifests and the authorization decision (tier × risk × verdict × dialogue)."""
