"""ecomkpi: the local stack (embedded AWS emulator, local Step Functions executor) and the CLI."""

__version__ = "0.1.0"
