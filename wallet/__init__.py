"""wallet package."""
