"""Command-line entry points.  The library never imports this package."""
