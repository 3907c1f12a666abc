"""Generated data and the scripted demo."""
