"""Stage run: the whole job from one TOML config, redoing only what changed."""
