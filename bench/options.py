"""Command-line input shared by every command (`run`, `tables`, `sensitivity`): `--set`
parsing, the options several commands take, and the one error for bad input. Kept apart
from bench/cli.py so that subcommands living in other modules use it without importing
the CLI that imports them."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from bench.layout import USER_RESULTS
from bench.registry import UnknownNameError

DEFAULT_RESULTS = USER_RESULTS  # a user's runs; never the committed reference


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`key=value` strings -> {key: value}; a value is JSON if it parses, else a string."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def split_sets(sets: dict[str, Any]) -> tuple[dict, dict, dict, dict]:
    """--set keys by target: train.*, model.*, budget.*, and the rest for the method."""
    train, model, budget, method = {}, {}, {}, {}
    for k, v in sets.items():
        head, _, tail = k.partition(".")
        if head == "train" and tail:
            train[tail] = v
        elif head == "model" and tail:
            model[tail] = v
        elif head == "budget" and tail:
            budget[tail] = v
        else:
            method[k] = v
    return train, model, budget, method


def train_config(overrides: dict[str, Any]):
    """The TrainConfig `train.*` overrides describe; an unknown field lists the valid ones."""
    from bench.spec import TrainConfig

    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise UnknownNameError(f"unknown train setting(s) {', '.join(bad)}; valid: "
                               f"{', '.join(sorted(valid))}")
    return TrainConfig(**overrides)  # checked on creation


def device(name: str):
    """The torch device `--device` names, or UsageError saying why not."""
    from bench.runner import resolve_device

    try:
        return resolve_device(name)
    except (RuntimeError, ValueError) as e:
        raise UsageError(str(e)) from None


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--data-root", default=None, help="root of a real dataset on local disk")


def add_compute_options(p: argparse.ArgumentParser, device_default: str = "auto") -> None:
    p.add_argument("--device", default=device_default, help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads, >= 1 (recorded in env, not part of the run id)")


def add_results_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
