"""Compression method plugins. Each module registers one method with `@register_method`."""
