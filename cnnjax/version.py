"""cnnjax's version string, in the lowest layer so that any module (the package, the command line, export's
sidecar) reads it without importing the package itself."""

__version__ = "0.1.0"
