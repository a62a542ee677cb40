"""Unzipped size of each function with its layers, from a `sam build` output; fails above 250 MB.

    python bench/package_size.py [.aws-sam/build] [--limit-mb 250]

Lambda's limit is on the function's code plus all of its layers, unzipped (250 MB). Needs only
PyYAML, so it runs on the SAM CLI's own virtualenv; the built template says which layers each
function uses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

MB = 1024 * 1024


def _any_tag(loader: Any, suffix: str, node: Any) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix.lstrip("!"): loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix.lstrip("!"): loader.construct_sequence(node)}
    return {suffix.lstrip("!"): loader.construct_mapping(node)}


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("build_dir", nargs="?", type=Path, default=Path(".aws-sam/build"))
    parser.add_argument("--limit-mb", type=float, default=250.0)
    args = parser.parse_args(argv)
    loader: Any = type("Loader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", _any_tag)
    template = yaml.load((args.build_dir / "template.yaml").read_text(), Loader=loader)
    resources = template["Resources"]
    layers_global = ((template.get("Globals") or {}).get("Function") or {}).get("Layers") or []
    sizes = {p.name: dir_size(p) for p in args.build_dir.iterdir() if p.is_dir()}
    for name, size in sorted(sizes.items()):
        print(f"  {name:22s} {size / MB:8.1f} MB")
    failed = False
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        layers = [*layers_global, *((resource.get("Properties") or {}).get("Layers") or [])]
        names = [layer.get("Ref", "") if isinstance(layer, dict) else str(layer) for layer in layers]
        total = sizes.get(logical_id, 0) + sum(sizes.get(n, 0) for n in names)
        ok = total <= args.limit_mb * MB
        failed |= not ok
        print(f"{logical_id:24s} {total / MB:8.1f} MB unzipped with {', '.join(names)} {'ok' if ok else 'OVER LIMIT'}")
    if failed:
        print(f"a function exceeds Lambda's {args.limit_mb:.0f} MB unzipped limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
