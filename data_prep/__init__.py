"""Converters from common public label formats to what `seg tile` takes (see README.md)."""
