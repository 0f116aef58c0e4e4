"""CPU stand-in for flash-attn (see ../README.md): only the pure-torch padding helpers are real."""

__version__ = "0.0.0+specrl.cpu.shim"
