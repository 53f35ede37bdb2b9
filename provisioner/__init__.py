"""Instances: the desired state, and the machinery that makes the cloud match it."""
