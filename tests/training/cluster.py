"""Starts `mw_child.py` processes: a 2-worker MultiWorkerMirroredStrategy job on
127.0.0.1, or one MirroredStrategy process (for tests and bench/scale.py)."""
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

CHILD = pathlib.Path(__file__).with_name("mw_child.py")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _env(extra):
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    env.update(extra or {})
    return env


class Proc:
    """One child process; stdout/stderr go to files under `logs`."""

    def __init__(self, args, logs, name, env=None):
        self.name, self.logs = name, pathlib.Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.out, self.err = self.logs / f"{name}.out", self.logs / f"{name}.err"
        self.start = time.monotonic()
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.popen = subprocess.Popen([sys.executable, str(CHILD), json.dumps(args)], stdout=out, stderr=err,
                                          env=_env(env))
        self.seconds = None

    def wait(self, timeout):
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.name} still running after {timeout} s (hung?); stderr tail:\n"
                                 f"{self.stderr()[-3000:]}") from None
        self.seconds = time.monotonic() - self.start
        return rc

    def stdout(self):
        return self.out.read_text()

    def stderr(self):
        return self.err.read_text()

    def result(self):
        """The child's summary dict (its `child-result` line)."""
        lines = [line for line in self.stdout().splitlines() if line.startswith("child-result ")]
        assert lines, f"{self.name}: no result; stderr tail:\n{self.stderr()[-3000:]}"
        return json.loads(lines[-1][len("child-result "):])


def start_workers(args_per_worker, logs, env=None, env_per_worker=None):
    """Starts one process per entry of `args_per_worker` as a local MWMS cluster."""
    ports = free_ports(len(args_per_worker))
    procs = []
    for i, args in enumerate(args_per_worker):
        extra = {**(env or {}), **((env_per_worker or [{}] * len(args_per_worker))[i]),
                 "TF_CONFIG": tf_config(ports, i)}
        procs.append(Proc({"mode": "multi_worker", **args}, logs, f"worker{i}", extra))
    return procs


def start_mirrored(args, logs, devices=2, name="mirrored"):
    return Proc({"mode": "mirrored", "devices": devices, **args}, logs, name)
