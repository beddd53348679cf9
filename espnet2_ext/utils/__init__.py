"""Small helpers shared by entry points and recipes."""
