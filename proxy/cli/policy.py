"""``cyphergate policy ...``: explain one decision, replay recorded ones, build a signed bundle,
serve the development folder as a bundle (parsing and printing only)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import visible
from proxy.cli import arguments
from proxy.cli.arguments import log_source_options, log_sources
from proxy.settings import OPASettings, load_settings

_OPA_HELP = "the opa binary (default: opa on PATH, else the devstack's)"


def register(commands: Any) -> None:
    """Add the ``policy`` command and its actions to the top-level subparsers."""
    policy = commands.add_parser("policy", help="explain and replay policy decisions")
    policy_commands = policy.add_subparsers(required=True, metavar="ACTION")
    explain = policy_commands.add_parser(
        "explain", help="the analysis, input document and decision for one statement"
    )
    explain.add_argument("--config", type=Path, required=True, help="the gateway's configuration")
    explain.add_argument("--dag", required=True, help="decide as this DAG")
    explain.add_argument("--database", default="neo4j", help="the database it would run on")
    explain.add_argument(
        "--parameter", action="append", default=[], help="a parameter name the statement uses"
    )
    explain.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="a summary, or everything in JSON",
    )
    explain.add_argument("statement", help="the Cypher statement (it is planned, never run)")
    explain.set_defaults(handler=_policy_explain)
    replay = policy_commands.add_parser(
        "replay", help="re-decide recorded requests with proposed policies; print what changes"
    )
    log_source_options(replay)
    replay.add_argument("--policies", type=Path, required=True, help="the proposed policy folder")
    arguments.add_window(replay, "decisions")
    replay.add_argument("--dag", help="only this DAG")
    replay.add_argument("--opa", type=Path, help=_OPA_HELP)
    replay.add_argument(
        "--format", choices=("table", "json"), default="table", help="a line per change, or JSON"
    )
    replay.add_argument(
        "--fail-on-change", action="store_true", help="exit 1 if any decision would change"
    )
    replay.set_defaults(handler=_policy_replay)
    build = policy_commands.add_parser(
        "build", help="validate the grants, then build (and sign) the folder as an OPA bundle"
    )
    build.add_argument(
        "--policies", type=Path, default=Path("policies"), help="the policy folder to build"
    )
    build.add_argument("--output", type=Path, required=True, help="the bundle (.tar.gz)")
    build.add_argument(
        "--revision", help="the manifest's revision (default: the folder's Git commit)"
    )
    build.add_argument("--signing-key", type=Path, help="PEM private key; unsigned without it")
    build.add_argument(
        "--signing-alg", default="RS256", help="the signature's algorithm (OPA's names; RS256)"
    )
    build.add_argument("--opa", type=Path, help=_OPA_HELP)
    build.set_defaults(handler=_policy_build)
    serve = policy_commands.add_parser(
        "serve", help="serve the policy folder to OPA as a bundle named by its content"
    )
    serve.add_argument(
        "--policies", type=Path, default=Path("policies"), help="the policy folder to serve"
    )
    serve.add_argument(
        "--port", type=arguments.port, required=True, help="listen on 127.0.0.1:PORT"
    )
    serve.add_argument("--opa", type=Path, help=_OPA_HELP)
    serve.set_defaults(handler=_policy_serve)


def _policy_explain(args: argparse.Namespace) -> int:
    from proxy.app import explain_statement

    settings = load_settings(args.config)
    shown = asyncio.run(
        explain_statement(
            settings,
            dag=args.dag,
            database=args.database,
            statement=args.statement,
            parameter_names=args.parameter,
        )
    )
    if args.format == "json":
        print(json.dumps(shown, indent=2, sort_keys=True))
        return 0
    decision = shown["decision"]
    verdict = "ALLOW" if decision["allow"] else "DENY"
    if decision["shadow"] and not decision["allow"]:
        verdict += " (shadow mode: it would run and be recorded)"
    print(f"{verdict} for DAG {args.dag} on {args.database}")
    for reason in decision["reasons"]:
        print(f"  reason: {visible(reason)}")
    print(f"  constraints: {json.dumps(decision['constraints'], sort_keys=True)}")
    print(f"  policy revision: {decision['policy_revision']}")
    print("analysis:")
    for key, value in shown["analysis"].items():
        print(f"  {key}: {json.dumps(value)}")
    return 0


def _policy_replay(args: argparse.Namespace) -> int:
    from proxy.app import open_policy
    from proxy.bundles import BundleError
    from proxy.gateway.replay import ReplaySummary, replay
    from proxy.opa_server import proposed_policy

    flt = RecordFilter(event="decision", dag=args.dag, since=args.since, until=args.until)
    summary = ReplaySummary()
    changes: list[dict[str, Any]] = []

    async def run(opa: OPASettings) -> None:
        async with open_policy(opa, cache=False) as policy:
            for path, _ in log_sources(args):
                with AuditReader(path) as reader:
                    async for change in replay(reader.query(flt), policy, summary):
                        changes.append({**asdict(change), "kind": change.kind, "log": str(path)})

    try:
        with proposed_policy(args.opa or _opa_binary(), args.policies) as opa:
            asyncio.run(run(opa))
    except BundleError as error:  # grants that would never ship decide nothing
        print(f"cyphergate policy replay: {error}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps({"summary": asdict(summary), "changes": changes}, indent=2))
    else:
        for change in changes:
            was = "allow" if change["was_allow"] else "deny " + ",".join(change["was_reasons"])
            now = "allow" if change["now_allow"] else "deny " + ",".join(change["now_reasons"])
            if change["kind"] == "newly_run_in_shadow":
                now += " (shadow mode: it would run)"
            if change["kind"] == "constraints_changed":
                was += " " + _limits(change["was_constraints"])
                now += " " + _limits(change["now_constraints"])
            statement = (change["statement"] or "").replace("\n", " ")[:60]
            line = f"#{change['seq']} {change['time']} {change['dag']}: {was} -> {now}  {statement}"
            print(visible(line))  # recorded text, as any caller sent it
        print(
            f"{summary.replayed} decisions replayed, {summary.changed} would change"
            f" ({summary.skipped} records without an analysis skipped)"
        )
        if summary.without_constraints:
            print(
                f"{summary.without_constraints} allowed decisions were recorded without their"
                " constraints (older records): only allow and reasons compared for them"
            )
    return 1 if args.fail_on_change and summary.changed else 0


def _limits(constraints: dict[str, Any]) -> str:
    rows = constraints["row_limit"]
    limit = (
        "no row limit" if rows is None else f"row_limit {rows} ({constraints['row_limit_action']})"
    )
    timeout = constraints["timeout_ms"]
    return f"[{limit}, " + ("no timeout]" if timeout is None else f"timeout {timeout} ms]")


def _policy_build(args: argparse.Namespace) -> int:
    from proxy.bundles import BundleError, build_bundle, git_revision

    try:
        revision = args.revision or git_revision(args.policies)
        build_bundle(
            args.opa or _opa_binary(),
            args.policies,
            args.output,
            revision=revision,
            signing_key=args.signing_key,
            signing_alg=args.signing_alg,
        )
    except BundleError as error:
        print(f"cyphergate policy build: {error}", file=sys.stderr)
        return 1
    signed = "signed" if args.signing_key else "unsigned"
    print(f"built {args.output} (revision {revision}, {signed})")
    return 0


def _policy_serve(args: argparse.Namespace) -> int:
    from proxy.bundle_server import RESOURCE, FolderBundleServer

    # Which revision is served, and why an edit is not: at INFO, on standard error.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = FolderBundleServer(args.opa or _opa_binary(), args.policies, args.port)

    def ready() -> None:
        print(f"serving {args.policies} at {server.url}{RESOURCE}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(ready)
    return 0


def _opa_binary() -> Path:
    found = shutil.which("opa")
    if found:
        return Path(found)
    from proxy.devstack.install import default_cache_dir, ensure_opa

    return ensure_opa(default_cache_dir())
