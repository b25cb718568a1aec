"""Deployment: exporting models (serving), loading deployed artefacts, running them on
videos and images (inference) and drawing the result (overlay)."""
