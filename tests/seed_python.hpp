// The seed's Python atomic_json_update, verbatim: the head of a Python program that tests and
// benchmarks complete with their own driver loop. It locks filelock.FileLock(path + ".lock") and
// looks FileLock up when called, so a driver may rebind FileLock (e.g. to poll faster).
#pragma once

namespace lockdb::test {

inline constexpr const char* kSeedAtomicJsonUpdate = R"PY(
from __future__ import annotations
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable
from filelock import FileLock

def atomic_json_update(
    path: str | Path,
    update_fn: Callable[[dict[str, Any]], dict[str, Any]],
    lock_timeout: float = 30.0,
) -> dict[str, Any]:
    """
    Read a JSON file, apply `update_fn`, and write back atomically.
    Safe for concurrent processes all modifying the same JSON store.
    Returns the new dict after update.
    """
    path = Path(path)
    lock_path = path.with_suffix(path.suffix + ".lock")
    with FileLock(str(lock_path), timeout=lock_timeout):
        # Read current state
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            data = {}
        # Apply update
        new_data = update_fn(data)
        # Write back atomically
        suffix = ".tmp" + str(os.getpid())
        tmp_path = path.with_suffix(suffix)
        tmp_path.write_text(json.dumps(new_data, indent=2), encoding="utf-8")
        os.replace(tmp_path, path)
    return new_data
)PY";

}  // namespace lockdb::test
