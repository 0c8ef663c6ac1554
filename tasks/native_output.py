"""TensorFlow's native start-up lines kept out of the logs, in a command and in a served run alike."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

# What TensorFlow's C++ runtime writes to stderr on import whatever TF_CPP_MIN_LOG_LEVEL says (it logs
# before absl's logging is initialised): the same lines on every command, never about this run.
NATIVE_NOISE = re.compile(r"absl::InitializeLog\(\)|oneDNN custom operations are on|use_unbounded_threadpool|cpu_feature_guard")


@contextmanager
def native_noise_filtered() -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 meanwhile; pass on every line but known noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines() if not NATIVE_NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def import_keras() -> ModuleType:
    """Keras; its first import (which starts TensorFlow) with the native noise filtered out."""
    if "keras" not in sys.modules:
        with native_noise_filtered():
            import keras
    import keras

    return keras
