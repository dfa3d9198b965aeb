"""``consul-xds-bridge`` (also ``python -m bridge``): serve, bootstrap, render, check-templates,
version. Exit status 2 means bad configuration or arguments, with a message naming the problem."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

from . import logs
from .bootstrap import (
    BootstrapOptions,
    bootstrap_yaml,
    grpc_bootstrap_json,
    parse_metadata,
    skip_verify_warning,
)
from .commands.status import add_status_flags, status_command
from .config import SETTINGS, Config, ConfigError, flag_help, load
from .tasks import cancel_and_wait
from .values import BOOL, HOST_PORT, PORT, Kind, parse_host_port

if TYPE_CHECKING:
    from .app import Bridge
    from .resources import BuildSettings
    from .templating import TemplateSource

SHUTDOWN_TIMEOUT = 15.0  # seconds from SIGTERM to exit, at the most

log = logging.getLogger("bridge")

EXIT_CONFIG = 2


def one_line(text: str) -> str:
    """A message as one line (template and parser errors may span several)."""
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


def version() -> str:
    try:
        return metadata.version("consul-xds-bridge")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Every setting's flag; values stay as given (parsed, with their source, in ``load``).

    A boolean is a switch: ``--x`` (true), ``--no-x`` (false), or ``--x VALUE``.
    """
    for s in SETTINGS:
        if not s.flag:
            continue
        if s.kind is BOOL:
            parser.add_argument(
                s.flag, dest=s.dest, nargs="?", const=True, metavar="BOOL", help=flag_help(s)
            )
            negative = f"--no-{s.flag[2:]}"
            parser.add_argument(
                negative, dest=s.dest, action="store_const", const=False, help=f"{s.flag} false"
            )
        else:
            parser.add_argument(s.flag, dest=s.dest, metavar=s.kind.metavar, help=flag_help(s))


def flags_from_namespace(namespace: argparse.Namespace) -> dict[str, Any]:
    return {s.key: getattr(namespace, s.dest, None) for s in SETTINGS if s.flag}


def _typed(kind: Kind) -> Callable[[str], Any]:
    """An argparse ``type`` from a value kind: a bad value exits 2 naming the flag."""

    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consul-xds-bridge",
        description="Serve Consul's service catalog to Envoy over gRPC xDS v3.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="watch Consul and serve xDS")
    serve.add_argument("--config", help="YAML config file (flags > env > file > defaults)")
    add_flags(serve)

    boot = commands.add_parser("bootstrap", help="print an Envoy bootstrap for this bridge")
    boot.add_argument("--node-id", required=True)
    boot.add_argument("--node-cluster", required=True)
    boot.add_argument(
        "--xds-address",
        action="append",
        type=_typed(HOST_PORT),
        default=[],
        metavar="HOST:PORT",
        help="the bridge (default 127.0.0.1:18000); repeat for replicas",
    )
    boot.add_argument("--admin-port", type=_typed(PORT), default=19000, metavar="PORT")
    boot.add_argument("--admin-address", default="127.0.0.1")
    boot.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    boot.add_argument("--locality-region", default="")
    boot.add_argument("--locality-zone", default="")
    boot.add_argument("--delta", action="store_true", help="use incremental (delta) xDS")
    boot.add_argument("--tls-ca", default="", help="CA file: connect to the bridge over TLS")
    boot.add_argument("--tls-cert", default="", help="client certificate (mTLS)")
    boot.add_argument("--tls-key", default="", help="client key (mTLS)")
    boot.add_argument("--tls-server-name", default="", help="SNI / expected bridge name")
    boot.add_argument(
        "--insecure-skip-verify",
        action="store_true",
        help="TLS without checking the bridge's certificate (CA and/or name): anyone able to "
        "intercept the connection can configure the Envoy",
    )
    boot.add_argument("--grpc", action="store_true", help="print a GRPC_XDS_BOOTSTRAP JSON instead")
    boot.add_argument(
        "--ignore-resource-deletion",
        action="store_true",
        help="with --grpc: the client keeps resources the bridge stops sending (gRFC A53)",
    )

    render = commands.add_parser("render", help="print the resources a node would receive")
    render.add_argument("--node-id", required=True)
    render.add_argument("--node-cluster", default="")
    render.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    render.add_argument("--catalog", help="a saved catalog JSON file instead of live Consul")
    render.add_argument(
        "--grpc", action="store_true", help="render for a proxyless gRPC client (its variant)"
    )
    render.add_argument(
        "--format",
        choices=("resources", "config_dump"),
        default="resources",
        help="resources (the bridge's JSON) or config_dump (as Envoy's /config_dump prints it)",
    )
    render.add_argument("--include-eds", action="store_true", help="config_dump: add endpoints")
    render.add_argument("--config", help="YAML config file")
    add_flags(render)

    check = commands.add_parser(
        "check-templates",
        help="validate every template set (with the settings serve would use)",
    )
    check.add_argument("--config", help="YAML config file (flags > env > file > defaults)")
    add_flags(check)

    status = commands.add_parser("status", help="each connected node's xDS sync state (CSDS)")
    add_status_flags(status)

    commands.add_parser("version", help="print the version")
    return parser


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    addresses = args.xds_address or [parse_host_port("127.0.0.1:18000")]
    try:
        if args.ignore_resource_deletion and not args.grpc:
            raise ValueError("--ignore-resource-deletion is a gRPC client setting: add --grpc")
        options = BootstrapOptions(
            node_id=args.node_id,
            node_cluster=args.node_cluster,
            xds_host=addresses[0].host,
            xds_port=addresses[0].port,
            replicas=tuple(addresses[1:]),
            admin_address=args.admin_address,
            admin_port=args.admin_port,
            metadata=parse_metadata(args.metadata),
            delta=args.delta,
            locality_region=args.locality_region,
            locality_zone=args.locality_zone,
            tls_ca_file=args.tls_ca,
            tls_cert_file=args.tls_cert,
            tls_key_file=args.tls_key,
            tls_server_name=args.tls_server_name,
            insecure_skip_verify=args.insecure_skip_verify,
            ignore_resource_deletion=args.ignore_resource_deletion,
        )
        sys.stdout.write(grpc_bootstrap_json(options) if args.grpc else bootstrap_yaml(options))
        warning = skip_verify_warning(options)
        if warning:
            print(f"bootstrap: WARNING: {warning}", file=sys.stderr)
    except ValueError as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _templates(config: Config, build: BuildSettings) -> TemplateSource:
    """The template sets the settings name (ConfigError naming the key when they are unusable)."""
    from .templating import template_source_from_config

    try:
        return template_source_from_config(config, build)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError("templates.dir", str(exc)) from None


def _serveable_templates(config: Config, build: BuildSettings) -> TemplateSource:
    """:func:`_templates`, refusing a default set that cannot render for the sample nodes:
    started with it, the bridge could configure no new node (nodes that have a configuration
    keep it while the bridge is down)."""
    templates = _templates(config, build)
    problem = templates.default_problem
    if problem is not None:
        raise ConfigError(
            "templates.dir",
            f"the default template set {templates.default_set!r} cannot render: {problem}",
            config.source("templates.dir"),
        )
    return templates


async def _serve(config_args: argparse.Namespace) -> int:
    from .app import Bridge, bridge_config

    config = load(flags_from_namespace(config_args), os.environ, config_args.config)
    logs.configure(config["log.level"], config["log.format"])
    bridge_cfg = bridge_config(config)
    logs.register_secret(bridge_cfg.consul.token)
    logs.register_secret(bridge_cfg.admin_debug_token)
    bridge = Bridge(bridge_cfg, _serveable_templates(config, bridge_cfg.build))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, bridge.reload_tls)  # renewed certificates, now
    await bridge.start()
    log.info(
        "consul-xds-bridge %s: xDS on port %d, admin on port %d, Consul at %s",
        version(),
        bridge.xds_port,
        bridge.admin_port,
        bridge_cfg.consul.address,
    )
    freeze = asyncio.create_task(_freeze_when_ready(bridge))
    await stop.wait()
    log.info("shutting down: closing xDS streams and Consul requests")
    try:
        async with asyncio.timeout(SHUTDOWN_TIMEOUT):
            await cancel_and_wait([freeze])
            await bridge.stop()
    except TimeoutError:
        # Every stop step is bounded on its own; this is the last resort, so that a SIGTERM
        # always ends the process (asyncio.run would otherwise wait for a stuck task forever).
        log.error("shutdown did not finish within %gs: exiting anyway", SHUTDOWN_TIMEOUT)
        logging.shutdown()
        os._exit(1)
    return 0


async def _freeze_when_ready(bridge: Bridge) -> None:
    """After the first full read, move what exists (mostly the catalog, long-lived) out of the
    garbage collector's sight: at 10,000 services a full collection otherwise pauses the
    process for ~0.5 s, which shows as push-latency spikes."""
    await bridge.watcher.ready.wait()
    gc.collect()
    gc.freeze()


async def _render(args: argparse.Namespace) -> dict[str, Any]:
    from .app import bridge_config
    from .render import catalog_from_consul, catalog_from_file, node_of, render

    config = load(flags_from_namespace(args), os.environ, args.config)
    logs.configure(config["log.level"], config["log.format"])
    node = node_of(args.node_id, args.node_cluster, parse_metadata(args.metadata), args.grpc)
    bridge_cfg = bridge_config(config)
    logs.register_secret(bridge_cfg.consul.token)
    templates = _templates(config, bridge_cfg.build)
    if args.catalog:
        datacenters, updates = catalog_from_file(args.catalog)
    else:
        datacenters, updates = await catalog_from_consul(bridge_cfg.consul)
    return await render(
        bridge_cfg, node, datacenters, updates, templates, args.format, args.include_eds
    )


def _cmd_render(args: argparse.Namespace) -> int:
    from .render import RenderError

    try:
        output = asyncio.run(_render(args))
    except (ConfigError, ValueError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RenderError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    json.dump(output, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def _cmd_check_templates(args: argparse.Namespace) -> int:
    from .commands.check_templates import main_check_templates

    try:
        config = load(flags_from_namespace(args), os.environ, args.config)
    except ConfigError as exc:
        print(f"config error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    return main_check_templates(config)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"consul-xds-bridge {version()}")
        return 0
    if args.command == "bootstrap":
        return _cmd_bootstrap(args)
    if args.command == "render":
        return _cmd_render(args)
    if args.command == "check-templates":
        return _cmd_check_templates(args)
    if args.command == "status":
        return status_command(args)
    try:
        return asyncio.run(_serve(args))
    except ConfigError as exc:  # every start-up failure: the key and one line, no traceback
        print(f"config error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1


def run() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())


if __name__ == "__main__":
    run()
