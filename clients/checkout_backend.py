"""The build backend of sharq-server: setuptools', plus one thing for a checkout.

sharq-server depends on sharq-client, a distribution of its own in clients/python/.
Installed from an index, pip finds that client on the index. Installed from a
checkout (`pip install .`), the client to take is the one beside it, which an
index may not have yet. So when pip asks for the metadata it resolves with, and
clients/python/ is here, the requirement names that folder (`sharq-client @
file:///…/clients/python`). The wheel itself, and every build from an sdist or
for an editable install (`make install`, which installs the client editable
first), keeps the plain `sharq-client` requirement an index can serve.
"""

from __future__ import annotations

import re
from pathlib import Path

from setuptools.build_meta import *  # noqa: F403 (every hook but the one below is setuptools')
from setuptools.build_meta import prepare_metadata_for_build_wheel as _prepare_metadata

CLIENT = Path(__file__).resolve().parent / "python"
# "Requires-Dist: sharq-client[async]==1.0.0; extra == 'async'": the extras, then the marker
REQUIREMENT = re.compile(r"^Requires-Dist: sharq-client(\[[^\]]*\])?[^;\n]*(;[^\n]*)?$", re.MULTILINE)


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: dict | None = None) -> str:
    """setuptools' metadata, its sharq-client requirement pointed at clients/python/ when here."""
    dist_info = _prepare_metadata(metadata_directory, config_settings)
    if (CLIENT / "pyproject.toml").is_file():
        metadata = Path(metadata_directory, dist_info, "METADATA")
        metadata.write_text(REQUIREMENT.sub(_from_checkout, metadata.read_text(encoding="utf-8")), encoding="utf-8")
    return dist_info


def _from_checkout(requirement: re.Match) -> str:
    """The requirement with the folder's URL in place of a version ("sharq-client[async] @ file:///…")."""
    extras, marker = requirement[1] or "", requirement[2]
    return f"Requires-Dist: sharq-client{extras} @ {CLIENT.as_uri()}" + (f" {marker}" if marker else "")
