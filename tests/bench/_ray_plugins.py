"""A plugin that kills its worker process, registered in Ray workers by a setup hook, to
test that a dead worker loses only its own run."""

import os

from bench.method import METHODS, Method, register_method


class Crash(Method):
    def compress(self, ctx, model):
        os._exit(1)


def setup():
    if "_test_crash" not in METHODS:
        register_method("_test_crash", family="_test")(Crash)
