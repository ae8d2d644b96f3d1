"""The hostile corpus: every entry point fed with the hostile classes of SECURITY.md, each with
its expected outcome and a check that nothing else happened."""
