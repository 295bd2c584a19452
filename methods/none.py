"""The baseline: the trained model, unchanged. Every other row is compared with it."""

from bench.method import Method, register_method


@register_method("none", family="none")
class NoCompression(Method):
    version = 1
