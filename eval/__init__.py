"""Evaluation: FID, prompt adherence, speed (installed as ``migm_shortcut.eval``)."""
