"""Configuration: the schema (`schema`) and finding configs by name (`loading`)."""
