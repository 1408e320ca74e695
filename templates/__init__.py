"""Message templates: templates/<locale>/<capability>/<message>.j2, shipped as package data."""
