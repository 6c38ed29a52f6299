"""Reference solutions of the exercises (`RLXF_EXERCISES=solutions pytest exercises/` tests these)."""
