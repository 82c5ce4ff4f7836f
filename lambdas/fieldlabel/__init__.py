"""Domain package of the field-photo labeling pipeline (shared by every Lambda, the tests and the CLI)."""
