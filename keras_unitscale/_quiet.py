"""The `keras-unitscale` command's quiet mode: TensorFlow's, XLA's and absl's own log lines
and TensorFlow's and JAX's Python warnings kept off its stderr (`--verbose` keeps them).

TensorFlow and XLA log from C++ as they are imported and initialised, whatever Python
settings say (TensorFlow's CUDA probe ignores `TF_CPP_MIN_LOG_LEVEL`), and Keras imports
TensorFlow as `keras_unitscale` is imported. So the command's file descriptor 2 goes through
a pipe whose reader passes on every line but the libraries' log lines, started by the
package's `__init__` before Keras is imported when the process is the installed command. No
Keras, TensorFlow or JAX import here.
"""

import atexit
import logging
import os
import re
import sys
import threading
import warnings

# A log line of TensorFlow, XLA or absl (C++ or Python): glog's `I1128 06:12:01.123 123
# file.cc:31] ...` (before absl is initialised, `I0000 00:00:1795848850.429070 ...`), absl's
# notice of that, and the second line of TensorFlow's CPU-feature notice.
_LIBRARY_LOG_LINE = re.compile(
    r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate"
)


def is_library_log_line(line):
    """Whether `line` (of stderr) is a TensorFlow, XLA or absl log line."""
    return _LIBRARY_LOG_LINE.match(line) is not None


def is_quiet_command():
    """Whether this process is the installed `keras-unitscale` command without `--verbose`."""
    name = os.path.basename(sys.argv[0] if sys.argv else "")
    return name in ("keras-unitscale", "keras-unitscale.exe") and "--verbose" not in sys.argv


def quiet_libraries():
    """The libraries' own settings: the C++ log level (a value the user set is kept), the
    `tensorflow`, `absl` and `jax` Python loggers, and their Python warnings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "jax"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(tensorflow|tf_keras|jax|jaxlib|absl)(\.|$)")


_filter = None  # (saved stderr descriptor, pump thread) while filtering


def filter_library_logs():
    """Sends file descriptor 2 through a pipe that drops library log lines (idempotent)."""
    global _filter
    if _filter is not None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    sink = os.fdopen(os.dup(saved), "wb", buffering=0)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def pump():
        with os.fdopen(read, "rb") as source, sink:
            for line in source:
                if not is_library_log_line(line.decode("utf-8", "replace")):
                    sink.write(line)

    thread = threading.Thread(target=pump, name="keras-unitscale-stderr", daemon=True)
    thread.start()
    _filter = (saved, thread)
    atexit.register(stop_filtering)


def stop_filtering():
    """Gives file descriptor 2 back and passes on what the pipe still holds."""
    global _filter
    if _filter is None:
        return
    saved, thread = _filter
    _filter = None
    sys.stderr.flush()
    os.dup2(saved, 2)  # the pipe's last writer is gone: the reader drains it and ends
    os.close(saved)
    thread.join(timeout=10)
