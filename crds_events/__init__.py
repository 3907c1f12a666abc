"""crds-events: an event-sourced server for CRDS calibration references and rules."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crds-events")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
