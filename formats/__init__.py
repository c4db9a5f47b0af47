"""File formats: the 3DGS PLY layout and the .gsz container (no torch in here)."""
