"""Tests of jobengine/storage/."""
