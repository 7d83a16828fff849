"""Test helpers shared by unit and end-to-end tests."""
