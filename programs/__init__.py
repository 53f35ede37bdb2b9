"""The Pulumi program of one customer instance (Pulumi.yaml runs programs/__main__.py)."""
