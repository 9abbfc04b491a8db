"""The model layer: policy schema, normalisers and record schemas. Pure; imported by every layer."""
