"""A test body run in a fresh Python process whose CPU is split into two logical devices.

Logical devices are fixed when TensorFlow starts, so tests that train under
`MirroredStrategy` over two replicas on a CPU-only machine run their body in a child
process (`tfrec.training.strategy.split_cpu(2)` before anything else touches TensorFlow).
"""
import subprocess
import sys
import textwrap

PRELUDE = "import tfrec\nfrom tfrec.training.strategy import split_cpu\ndevices = split_cpu(2)\n"


def run_on_two_cpus(body: str, timeout: int = 600) -> str:
    """Runs `body` (dedented; `devices` holds the two logical device names) after the
    split and returns its standard output; fails the test with the tail of the child's
    standard error when it exits non-zero."""
    code = PRELUDE + textwrap.dedent(body)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout
