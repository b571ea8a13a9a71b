"""The ``cyphergate`` command line: parsing and printing only; the work is library code."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from proxy.errors import CypherGateError
from proxy.logs import configure_logging
from proxy.settings import load_settings
from proxy.settings_errors import ConfigurationError

if TYPE_CHECKING:  # the devstack is imported only by the commands that use it
    from proxy.devstack.stack import DevStack


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cyphergate`` script; returns the exit status."""
    if (sys.argv[1:] if argv is None else list(argv))[:1] == ["serve"]:
        _without_data_frame_libraries()  # before anything imports the neo4j driver
    # Here: they import the neo4j driver (see above).
    from proxy.audit.archive import ArchiveUnreachable
    from proxy.audit.checkpoint import NotAKey
    from proxy.audit.export import ExportFailed
    from proxy.audit.reader import BadFilter, NotAnAuditLog
    from proxy.cli.arguments import check_window

    parser = _parser()
    args = parser.parse_args(argv)
    check_window(parser, args)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except ConfigurationError as error:
        # A few lines naming the wrong keys; never a traceback, never a value (secrets).
        print("cyphergate: " + "\n".join(error.lines()), file=sys.stderr)
        return 2
    except (BadFilter, NotAnAuditLog, NotAKey, ExportFailed) as error:
        print(f"cyphergate: {error}", file=sys.stderr)
        return 2
    except ArchiveUnreachable as error:  # S3's words: no credentials, no bucket, no route
        print(f"cyphergate: {error}", file=sys.stderr)
        return 1
    except FileNotFoundError as error:  # a file the command was given
        print(f"cyphergate: no such file: {error.filename or error}", file=sys.stderr)
        return 2
    except CypherGateError as error:
        # The operator's own tool: the reason (never a secret) says which dependency failed.
        print(f"cyphergate: {error.message} ({error.code}: {error.reason})", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status


def _parser() -> argparse.ArgumentParser:
    from proxy.cli import arguments, audit, policy  # here: they import the neo4j driver (main)

    parser = argparse.ArgumentParser(prog="cyphergate", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"cyphergate {_version()}", help="print the version"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=arguments.port, help="override server.port")
    # A worker of several (proxy/workers.py): started by the supervisor, never by hand.
    internal = "(internal: set by the supervisor of server.workers for its workers)"
    serve.add_argument("--worker", type=int, help=f"this worker's number {internal}")
    serve.add_argument("--listeners", help=f"the sockets this worker listens on {internal}")
    serve.add_argument(
        "--schema-epoch", type=Path, help=f"the schema epoch the workers share {internal}"
    )
    serve.set_defaults(handler=_serve)

    config = commands.add_parser("config", help="the gateway's configuration file")
    config_commands = config.add_subparsers(required=True, metavar="ACTION")
    check = config_commands.add_parser(
        "check",
        help="validate a configuration and the files it names, without starting anything",
    )
    check.add_argument("--config", type=Path, required=True, help="the file to check")
    check.set_defaults(handler=_config_check)

    audit.register(commands)
    policy.register(commands)

    creds = commands.add_parser("creds", help="the gateway's own Neo4j credential")
    creds_commands = creds.add_subparsers(required=True, metavar="ACTION")
    rotate_root = creds_commands.add_parser(
        "rotate-root",
        help="rotate the gateway's Neo4j password in Neo4j and its secret store (never printed)",
    )
    rotate_root.add_argument("--config", type=Path, required=True, help="the gateway's config")
    rotate_root.set_defaults(handler=_creds_rotate_root)

    devstack = commands.add_parser("devstack", help="the local stack of real services")
    devstack_commands = devstack.add_subparsers(required=True, metavar="ACTION")
    for name, help_text in (
        (
            "install",
            "install Neo4j, OPA and the OIDC provider into the cache, and in a checkout the "
            "driver test clients and cypher-shell",
        ),
        ("up", "start the stack (and with --with-gateway, the gateway)"),
        ("down", "stop everything the stack started"),
        ("status", "describe the running stack"),
        ("env", 'print shell exports for the running stack: eval "$(cyphergate devstack env)"'),
        ("token", "print a fresh access token for a demo DAG (--dag) or demo client (--client)"),
        ("auth-header", "print a complete Authorization header value for a demo DAG"),
    ):
        sub = devstack_commands.add_parser(name, help=help_text)
        _stack_options(sub)
        sub.set_defaults(handler=_devstack, action=name)
        if name == "up":
            sub.add_argument(
                "--with-gateway", action="store_true", help="also start a gateway in front of them"
            )
        if name == "status":
            sub.add_argument(
                "--format", choices=("text", "json"), default="text", help="indented, or one line"
            )
        if name == "token":
            whose = sub.add_mutually_exclusive_group(required=True)
            whose.add_argument("--dag", help="the DAG whose demo client asks")
            whose.add_argument(
                "--client", help="a demo client by id, also one bound to no DAG (demo_auditor)"
            )
        if name == "auth-header":
            sub.add_argument("--dag", required=True, help="the DAG whose demo client asks")
        if name == "auth-header":
            sub.add_argument(
                "--method",
                choices=("oidc", "iam"),
                default="oidc",
                help="a bearer token, or an AWS IAM proof signed for the DAG's role",
            )

    demo = commands.add_parser("demo", help="start the stack and walk through the request path")
    _stack_options(demo)
    demo.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    demo.set_defaults(handler=_demo)
    return parser


def _stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path(".devstack"), help="run folder")
    parser.add_argument("--policies", type=Path, default=Path("policies"), help="policy folder")


# Installed beside the gateway by the ``parquet`` extra (``audit export``) or for other tools,
# and imported by the neo4j driver whenever present, for results as data frames that the
# server never asks for: pyarrow alone is about 45 MiB of the server's memory (its peak under
# benchmarks/request_path.py fell from 180 to 138 MiB without it). A ``None`` in
# ``sys.modules`` makes an import of them fail, as if they were not installed; the command
# line's other commands still have them.
_NOT_FOR_THE_SERVER = ("pyarrow", "pandas", "numpy")


def _without_data_frame_libraries() -> None:
    for name in _NOT_FOR_THE_SERVER:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]


def _serve(args: argparse.Namespace) -> int:
    from proxy import workers
    from proxy.cli.config import file_problems

    settings = load_settings(args.config)
    if args.worker is None and (problems := file_problems(settings, folders_made=True)):
        # One line per unusable file, as `config check` says it, not a traceback from the
        # part of the start-up that first reads it (its workers check nothing again).
        raise ConfigurationError(args.config, problems)
    # The gateway's own events (rotations, leases, policy revisions) at INFO; never secrets.
    # uvicorn's lines go through the same handler (log_config=None), with their request ids.
    configure_logging(settings.server.log_format)
    if args.worker is not None:
        if args.listeners is None or args.schema_epoch is None:
            raise SystemExit("--worker is started by the supervisor, with its listeners")
        listeners = workers.Listeners.parse(args.listeners)
        return workers.serve_worker(settings, args.worker, listeners, args.schema_epoch)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    command = ["serve"] if args.config is None else ["serve", "--config", str(args.config)]
    return workers.serve(settings, host=host, port=port, command=workers.worker_command(command))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cyphergate")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown"


def _config_check(args: argparse.Namespace) -> int:
    from proxy.cli.config import check_config

    _, problems = check_config(args.config)
    if problems:
        print(f"cyphergate: configuration {args.config} names files that are not usable:")
        for problem in problems:
            print(f"  {problem}")
        return 2
    print(f"OK: {args.config} is a valid configuration; the files it names are usable")
    return 0


def _devstack(args: argparse.Namespace) -> int:
    from proxy.devstack.install import InstallError, default_cache_dir
    from proxy.devstack.stack import DevStack

    stack = DevStack(args.dir, cache_dir=default_cache_dir(), policies_dir=args.policies)
    try:
        return _devstack_action(stack, args)
    except InstallError as exc:  # the message says which tool failed, and its last lines
        print(f"cyphergate: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:  # an unknown demo DAG or client: the message lists the known ones
        print(f"cyphergate: {exc.args[0]}", file=sys.stderr)
        return 2
    except FileNotFoundError:
        if stack.state_file.exists():
            raise
        print(f"cyphergate: no stack in {args.dir}: run `cyphergate devstack up`", file=sys.stderr)
        return 1


def _devstack_action(stack: DevStack, args: argparse.Namespace) -> int:
    from proxy.devstack.drivers import DRIVER_SOURCES, LANGUAGES, ensure_driver_clients

    if args.action == "install":
        components = stack.install()
        installed: dict[str, object] = {
            "neo4j_classpath": components.neo4j_classpath,
            "opa": str(components.opa),
            "oidc": str(components.oidc_dir),
        }
        if DRIVER_SOURCES.is_dir():  # a checkout: its tests run the official drivers too
            clients = ensure_driver_clients(stack.cache_dir)
            installed["driver_clients"] = {
                **{language: clients.command(language) for language in LANGUAGES},
                "cypher-shell": clients.cypher_shell_command(),
            }
        print(json.dumps(installed))
    elif args.action == "up":
        status = stack.up(with_gateway=args.with_gateway)
        print(json.dumps(status, indent=2))
    elif args.action == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.action == "status":
        status = stack.status()
        print(json.dumps(status, indent=None if args.format == "json" else 2))
    elif args.action == "env":
        # Values quoted for the shell: eval "$(cyphergate devstack env)".
        for name, value in stack.shell_env().items():
            print(f"export {name}={shlex.quote(value)}")
    elif args.action == "token":
        print(stack.token(args.dag) if args.dag else stack.client_token(args.client))
    elif args.action == "auth-header":
        print(stack.auth_header(args.dag, method=args.method))
    return 0


def _creds_rotate_root(args: argparse.Namespace) -> int:
    from proxy.app import rotate_root

    settings = load_settings(args.config)
    user = asyncio.run(rotate_root(settings))
    print(f"rotated the Neo4j password of {user}; only the secret store holds the new one")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from proxy.devstack.demo import run_demo

    return run_demo(args.dir, args.policies, keep=args.keep)
