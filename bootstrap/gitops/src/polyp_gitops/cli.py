"""polyp-gitops: render and validate the platform's environments (and, later, bump and promote)."""

from __future__ import annotations

import argparse
import sys

import yaml

from .repo import ENVIRONMENTS
from .render import DEFAULT_REPO_URL, render_environment
from .tools import ToolError
from .validate import kubeconform


def _render(args: argparse.Namespace) -> int:
    rendered = render_environment(args.env, args.repo, args.revision)
    yaml.safe_dump_all(rendered.all_objects(), sys.stdout, sort_keys=False)
    return 0


def _validate(args: argparse.Namespace) -> int:
    failed = False
    for env in args.env or ENVIRONMENTS:
        rendered = render_environment(env, args.repo, args.revision)
        report = kubeconform(rendered.all_objects())
        upstream = sorted(a.upstream_chart for a in rendered.apps.values() if a.upstream_chart)
        print(f"{env}: {report.summary()} ({len(rendered.apps)} Applications; "
              f"{len(upstream)} upstream charts checked as Application objects only)")
        for problem in report.problems:
            print(f"  {problem}")
        failed |= not report.ok
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyp-gitops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_source_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--repo", default=DEFAULT_REPO_URL, help="git URL Argo CD tracks")
        p.add_argument("--revision", default="main", help="branch, tag or commit Argo CD tracks")

    render = sub.add_parser("render", help="print every object of an environment, rendered as Argo CD would")
    render.add_argument("--env", required=True, choices=ENVIRONMENTS)
    add_source_args(render)
    render.set_defaults(func=_render)

    validate = sub.add_parser("validate", help="render environments and validate every object with kubeconform")
    validate.add_argument("--env", action="append", choices=ENVIRONMENTS, help="repeatable; default: all")
    add_source_args(validate)
    validate.set_defaults(func=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ToolError, ValueError) as exc:
        print(f"polyp-gitops: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
