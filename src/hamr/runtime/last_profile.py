"""The last profile of each executable, kept under the cache folder for `hamr inspect --profile`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hamr.profiling import Profile


def _profiles_dir() -> Path:
    from hamr.settings import settings

    return settings().cache_dir / "profiles"


def save_last(exe, profile: Profile) -> Path | None:
    """Keep the last profile of an executable, for `hamr inspect --profile`."""
    from hamr.runtime.measurements import executable_key

    path = _profiles_dir() / f"{executable_key(exe)}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(profile.to_json()))
        os.replace(tmp, path)
    except OSError:
        return None
    return path


def load_last(exe) -> Profile | None:
    from hamr.runtime.measurements import executable_key

    try:
        return Profile.from_json(json.loads((_profiles_dir() / f"{executable_key(exe)}.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
