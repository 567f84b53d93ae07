"""Peers of rtml's features in other stream processors, run beside the Quix app and compared."""
