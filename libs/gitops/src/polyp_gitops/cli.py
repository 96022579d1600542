"""polyp-gitops: render, validate, bump and promote the platform's environments.

Every command acts on the repository that contains the current directory (like git); -C DIR or
POLYP_REPO_ROOT names another. Outside a clone of the platform repository it exits 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from . import crossref, live, promotion
from .errors import PinError, ToolError
from .pins import own_images
from .render import DEFAULT_REPO_URL, render_argocd, render_environment, upstream_charts
from .repo import ENVIRONMENTS, repo_root
from .validate import ValidationReport, validate_groups


def _render(args: argparse.Namespace) -> int:
    rendered = render_environment(args.env, args.root, args.repo, args.revision)
    yaml.safe_dump_all(rendered.all_objects(), sys.stdout, sort_keys=False)
    return 0


def _validate(args: argparse.Namespace) -> int:
    """Every object of every environment, upstream charts included, and Argo CD itself; per Application."""
    groups, sources = {"bootstrap/argo-cd": render_argocd(args.root)}, {"bootstrap/argo-cd": "argo-cd (install.sh)"}
    environments = {}
    for env in args.env or ENVIRONMENTS:
        rendered = environments[env] = render_environment(env, args.root, args.repo, args.revision)
        groups[f"{env}/bootstrap"], sources[f"{env}/bootstrap"] = rendered.bootstrap, "bootstrap/root"
        for name, app in rendered.apps.items():
            groups[f"{env}/{name}"] = [app.application, *app.objects]
            source = app.application["spec"]["source"]
            sources[f"{env}/{name}"] = f"{source['chart']} {source['targetRevision']}" if "chart" in source else source["path"]
    reports = validate_groups(groups)
    failed = False
    for scope in dict.fromkeys(name.split("/")[0] for name in groups):
        names = [n for n in groups if n.split("/")[0] == scope]
        total = ValidationReport.of([s for n in names for s in reports[n].statuses], [])
        print(f"{scope}: {total.summary()} ({len(names)} renders)")
        for name in names:
            report = reports[name]
            print(f"  {name.split('/', 1)[1]:<24} {sources[name]:<34} {len(groups[name]):>4} objects, {report.valid:>4} valid")
            for problem in report.problems:
                print(f"    {problem}")
        failed |= not total.ok
    for env, rendered in environments.items():
        problems = crossref.environment_problems(rendered, args.root)
        print(f"{env}: cross-references {'ok' if not problems else f'{len(problems)} problems'}")
        for problem in problems:
            print(f"  {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


def _images(args: argparse.Namespace) -> int:
    for image in sorted(crossref.images(render_environment(args.env, args.root))):
        print(image)
    return 0


def _own_images(args: argparse.Namespace) -> int:
    for component, image in own_images(args.env, args.root).items():
        print(component, image)
    return 0


def _charts(args: argparse.Namespace) -> int:
    for name, version, repo in sorted(upstream_charts(args.root)):
        print(f"{name} {version} {repo}")
    return 0


def _bump(args: argparse.Namespace) -> int:
    change = promotion.bump(args.env, args.component, args.tag, args.root, commit=not args.no_commit)
    print(f"{args.env}: {change}" if change else f"{args.env}: {args.component} already at {args.tag}; nothing to do")
    return 0


def _pin_model(args: argparse.Namespace) -> int:
    changes = promotion.pin_model(args.env, args.version, args.root, commit=not args.no_commit, sha256=args.sha256)
    for change in changes:
        print(f"{args.env}: {change}")
    if not changes:
        print(f"{args.env}: already serves model version {args.version}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    changes = promotion.plan(args.source, args.target, args.root)
    for change in changes:
        print(change)
    if not changes:
        print(f"{args.target} already matches {args.source}; nothing to promote")
    return 0


def _promote(args: argparse.Namespace) -> int:
    changes = promotion.promote(args.source, args.target, args.root, commit=not args.no_commit)
    for change in changes:
        print(f"{args.target}: {change}")
    if not changes:
        print(f"{args.target} already matches {args.source}; nothing to promote")
    return 0


def _wait_healthy(args: argparse.Namespace) -> int:
    return live.main_wait(args.env, args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyp-gitops", description=__doc__)
    parser.add_argument(
        "-C",
        "--repo-dir",
        metavar="DIR",
        help="act on the platform repository containing DIR (default: POLYP_REPO_ROOT, else the "
        "repository containing the current directory, as git does)",
    )
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

    images = sub.add_parser("images", help="every container image an environment runs (what an air-gapped mirror holds)")
    images.add_argument("--env", required=True, choices=ENVIRONMENTS)
    images.set_defaults(func=_images)

    own = sub.add_parser("own-images", help="each image built from this repo and the reference an environment pins for it")
    own.add_argument("--env", required=True, choices=ENVIRONMENTS)
    own.set_defaults(func=_own_images)

    charts = sub.add_parser("charts", help="every upstream chart and version a chart mirror must hold")
    charts.set_defaults(func=_charts)

    bump = sub.add_parser("bump", help="set one image tag in one environment and commit")
    bump.add_argument("--env", required=True)
    bump.add_argument("--component", required=True)
    bump.add_argument("--tag", required=True, help="immutable: a version or a git commit SHA")
    bump.add_argument("--no-commit", action="store_true", help="edit the file only")
    bump.set_defaults(func=_bump)

    pin = sub.add_parser("pin-model", help="set the model version one environment serves and commit")
    pin.add_argument("--env", required=True)
    pin.add_argument("--version", required=True, help="an MLflow model version number")
    pin.add_argument(
        "--sha256",
        default="",
        help="its model.onnx digest (the version's onnx_sha256 tag): the serving "
        "pods start only on exactly those bytes, here and where it is promoted",
    )
    pin.add_argument("--no-commit", action="store_true", help="edit the file only")
    pin.set_defaults(func=_pin_model)

    diff = sub.add_parser("diff", help="show what a promotion would change")
    promote = sub.add_parser("promote", help="copy image tags and the model version pin to the next environment (one commit)")
    promote.add_argument("--no-commit", action="store_true", help="edit the file only")
    for p, func in ((diff, _diff), (promote, _promote)):
        p.add_argument("--from", dest="source", required=True)
        p.add_argument("--to", dest="target", required=True)
        p.set_defaults(func=func)
    wait = sub.add_parser(
        "wait-healthy",
        help="in a live cluster: wait until every Application is Synced and Healthy, and check that the sync waves ran in order",
    )
    wait.add_argument("--env", required=True, choices=ENVIRONMENTS)
    wait.add_argument("--timeout", type=float, default=1800, help="seconds (default 1800)")
    wait.set_defaults(func=_wait_healthy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.root = repo_root(args.repo_dir)
        return args.func(args)
    except (ToolError, PinError, ValueError, RuntimeError) as exc:
        print(f"polyp-gitops: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
