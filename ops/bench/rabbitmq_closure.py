#!/usr/bin/env python3
"""Trims a copy of RabbitMQ and Erlang to what the broker starts (ops/bench/gpu_fleet_pack.sh).

    rabbitmq_closure.py PLUGINS_DIR ERLANG_LIB_DIR

Deletes every plugin and Erlang application outside the closure of the `.app` dependencies
(`applications` and `included_applications`) of the broker's own applications and of what
rabbitmqctl and the runtime start without listing them. Works on a copy: never on /usr/lib.
"""
import glob
import os
import re
import shutil
import sys

# Started by the broker, its tools or the runtime without being listed as a dependency.
ROOTS = ["rabbit", "rabbitmq_prelaunch", "rabbit_common", "getopt", "observer_cli",
         "stdout_formatter", "kernel", "stdlib", "sasl", "compiler", "runtime_tools", "tools",
         "crypto", "mnesia", "parsetools", "erts"]


def applications(bases):
    apps = {}
    for base in bases:
        for folder in os.listdir(base):
            app = glob.glob(os.path.join(base, folder, "ebin", "*.app"))
            if not app or "-" not in folder:
                continue
            text, deps = open(app[0], encoding="utf-8", errors="replace").read(), set()
            for key in ("applications", "included_applications"):
                m = re.search(r"\{" + key + r",\s*\[(.*?)\]\}", text, re.S)
                if m:
                    deps |= {x.strip() for x in m.group(1).replace("\n", " ").split(",") if x.strip()}
            apps[folder.rsplit("-", 1)[0]] = (os.path.join(base, folder), deps)
    return apps


def main(plugins, otp):
    if plugins.startswith("/usr/lib") or otp.startswith("/usr/lib"):
        sys.exit("rabbitmq_closure.py trims a copy, not the system's installation")
    apps = applications([plugins, otp])
    need, stack = set(), list(ROOTS)
    while stack:
        name = stack.pop()
        if name not in need:
            need.add(name)
            stack += list(apps.get(name, ("", set()))[1])
    for name, (path, _) in apps.items():
        if name not in need:
            shutil.rmtree(path)
    for extra in glob.glob(os.path.join(otp, "erl_interface-*")):
        shutil.rmtree(extra)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
