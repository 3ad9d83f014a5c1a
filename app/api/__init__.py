"""API blueprints, one per area."""
