"""Bridges to other model libraries (timm)."""
