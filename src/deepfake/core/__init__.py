"""Layer 0: errors, the params schema, atomic file I/O, stage reports, the command helpers, devices.

Imports nothing from the other layers.
"""
