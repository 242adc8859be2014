"""Command line: `python -m devhost [--app DIR] [--port 7071] [--instances N] [--azurite DIR]`.

The parent process checks the app, settles the host keys, optionally starts Azurite, then
runs N host instances as child processes on one port and one storage account (scale-out)
and stops them all on Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devhost import config
from devhost.azurite import start_azurite, wait_for_port
from devhost.keys import load_keys
from devhost.worker import RESTART_EXIT_CODE, InvocationFilter

DEFAULT_AZURITE_PORTS = (10000, 10001, 10002)
STOP_WAIT_SECONDS = 15


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(process)d %(name)s %(message)s%(invocation)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(InvocationFilter())
    # The SDKs log every storage request at INFO; only their warnings are of interest here.
    logging.getLogger("azure").setLevel(logging.WARNING)


def _run_instance(args) -> int:
    from devhost.host import HostInstance
    from devhost.keys import HostKeys

    keys = HostKeys(os.environ["DEVHOST_MASTER_KEY"], os.environ["DEVHOST_FUNCTION_KEY"])
    instance = HostInstance(Path(args.app), keys, args.host, args.port)
    instance.start()
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop["now"]:
        time.sleep(0.2)
    instance.stop()
    return 0


def _supervise(args) -> int:
    app = Path(args.app).resolve()
    try:
        host_config = config.load_host_config(app)
        settings = config.load_settings(app)
        _, errors = config.load_functions(app, host_config, settings)
    except config.ConfigError as error:
        print(f"devhost: {error}", file=sys.stderr)
        return 2
    for reason in errors.values():
        print(f"devhost: function disabled: {reason}", file=sys.stderr)
    if not args.join and wait_for_port(args.port, 0.2):
        print(f"devhost: port {args.port} is already in use (another host, or a second `make run`?). Stop it, or "
              f"choose another port (make run PORT={args.port + 1}); --join adds instances to a host on it.",
              file=sys.stderr)
        return 2
    keys = load_keys(app, settings)
    environment = dict(os.environ, DEVHOST_MASTER_KEY=keys.master, DEVHOST_FUNCTION_KEY=keys.function)
    azurite = None
    if args.azurite:
        if all(wait_for_port(p, 0.2) for p in DEFAULT_AZURITE_PORTS):
            print("devhost: Azurite already listens on 10000-10002; using it", file=sys.stderr)
        else:
            azurite = start_azurite(app, Path(args.azurite).resolve(), DEFAULT_AZURITE_PORTS,
                                    log_file=Path(args.azurite).resolve() / "azurite.log")
        environment["AzureWebJobsStorage"] = "UseDevelopmentStorage=true"
    command = [sys.executable, "-m", "devhost", "--app", str(app), "--host", args.host,
               "--port", str(args.port), "--instance"]
    children = [subprocess.Popen(command, env=environment) for _ in range(args.instances)]
    supervisor = _Restarts(command, environment)
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if wait_for_port(args.port, 60):
        prefix = f"/{host_config.route_prefix}" if host_config.route_prefix else ""
        print(f"devhost: listening on http://{args.host}:{args.port}{prefix} with {args.instances} "
              f"instance(s), pids {' '.join(str(c.pid) for c in children)}", flush=True)
        print(f"devhost: master (admin) key for x-functions-key: {keys.master}", flush=True)
    try:
        while not stop["now"]:
            children = supervisor.replace_restarted(children)
            if all(c.poll() is not None for c in children):
                break
            time.sleep(0.2)
    finally:
        print(f"devhost: stopping: each instance stops taking work and finishes its current invocations "
              f"(at most {STOP_WAIT_SECONDS} s){', then Azurite stops' if azurite is not None else ''}",
              file=sys.stderr, flush=True)
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(STOP_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
        if azurite is not None:
            azurite.stop()
    return 0


class _Restarts:
    """Starts a new instance in place of one whose worker restarted (functionTimeout)."""

    def __init__(self, command: list[str], environment: dict):
        self.command, self.environment = command, environment

    def replace_restarted(self, children: list) -> list:
        replaced = []
        for child in children:
            if child.poll() == RESTART_EXIT_CODE:
                child = subprocess.Popen(self.command, env=self.environment)
                print(f"devhost: worker process restarted, new pid {child.pid}", file=sys.stderr, flush=True)
            replaced.append(child)
        return replaced


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--app", default=".", help="the function app folder (holding host.json)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--instances", type=int, default=1, help="host instances side by side (scale-out)")
    parser.add_argument("--join", action="store_true",
                        help="add instances to a host already listening on the port (else a busy port is refused)")
    parser.add_argument("--azurite", metavar="DIR",
                        help="start Azurite on its default ports with its data in DIR and use it")
    parser.add_argument("--list-package", action="store_true",
                        help="print the files a publish would ship (.funcignore applied as Core Tools does) and exit")
    parser.add_argument("--instance", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list_package:
        from devhost.funcignore import package_files
        print("\n".join(package_files(Path(args.app).resolve())))
        return 0
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    _configure_logging()
    return _run_instance(args) if args.instance else _supervise(args)


if __name__ == "__main__":
    sys.exit(main())
