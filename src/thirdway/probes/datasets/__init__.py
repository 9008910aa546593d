"""The probe datasets (YAML), written for thirdway; see each file's header for its format."""
