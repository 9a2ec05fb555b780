"""What the benchmarks share: each backend is measured in a fresh process of the same script.

A benchmark script parses its options, and without `--child` calls `measure_in_children`,
which reruns the script with `--child` and the given options once per backend (the backend
must be chosen before Keras is imported) and returns each child's last stdout line, parsed
as JSON.
"""

import json
import os
import subprocess
import sys


def measure_in_children(script, backends, options):
    """Yields the JSON result of `script --child *options` under each backend in turn."""
    for backend in backends:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        out = subprocess.run(
            [sys.executable, script, "--child", *options],
            env=env, capture_output=True, text=True, check=True,
        )
        yield json.loads(out.stdout.strip().splitlines()[-1])


def options_of(args, keys):
    """`--key=value` for each of `keys` from parsed `args` that is set, to pass to a child
    (underscores in `keys` become the options' dashes)."""
    return [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keys
            if getattr(args, k) is not None]
