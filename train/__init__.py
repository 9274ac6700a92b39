"""Training pipelines (installed as ``migm_shortcut.train``)."""
