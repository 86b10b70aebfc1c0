"""Rendering a plan: `text` for terminals (Terraform's symbols), `report` for JSON and markdown.

Pure: every value shown went through the core's redaction, so no rendering holds a secret.
"""
