"""Tests of jobengine/assets/."""
