"""Local servers that speak the real provider protocols, for tests."""
