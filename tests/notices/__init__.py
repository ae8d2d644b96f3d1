"""Tests of jobengine/notices/."""
