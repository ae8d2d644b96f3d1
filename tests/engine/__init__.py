"""Tests of jobengine/engine/."""
